/*
** cli.h — internal interface between the command's main.c and repl.c.
*/
#ifndef SK_CLI_H
#define SK_CLI_H

#include "../embed/sk_embed.h"
#include "../include/skein.h"

/* 1 while the REPL reads input: Ctrl-C then cancels the line instead of
** ending the program. */
extern volatile int sk_cli_repl_active;

void sk_cli_set_sigint(int on);
void sk_cli_message(const char *msg);
int sk_cli_report(lua_State *L, int status);

/* Waits for the remaining non-daemon tasks and workers, as at the end of a
** script; returns 0 or an exit status (1 after a deadlock, 130 after an
** interrupt). */
int sk_cli_drain(skein_runtime *rt);

/* Runs the interactive loop until end of input (Ctrl-D), then waits for
** what is still running as sk_cli_drain does and returns its status. Tasks
** keep running while it waits for a line; Ctrl-C cancels the line being
** typed, or interrupts the line being evaluated, and the loop goes on. On a
** terminal, the first Ctrl-D with work still running only says so. */
int sk_cli_repl(skein_runtime *rt);

#endif
