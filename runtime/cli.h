/*
** cli.h — internal interface between the command's main.c and repl.c.
*/
#ifndef SK_CLI_H
#define SK_CLI_H

#include "include/skein.h"

/* 1 while the REPL reads input: Ctrl-C then cancels the line instead of
** ending the program. */
extern volatile int sk_cli_repl_active;

void sk_cli_set_sigint(int on);
void sk_cli_message(const char *msg);
int sk_cli_report(lua_State *L, int status);

/* Provided by runtime.c for the command: whether the last chunk ended by an
** interrupt it did not catch; and forgetting an interrupt the script
** caught, so that the wait for its remaining tasks goes on. */
int sk_runtime_interrupt_escaped(skein_runtime *rt);
void sk_runtime_interrupt_handled(skein_runtime *rt);

/* Runs the interactive loop until end of input (Ctrl-D). Tasks keep running
** while it waits for a line; Ctrl-C cancels the line being typed, or
** interrupts the line being evaluated, and the loop goes on. */
void sk_cli_repl(skein_runtime *rt);

#endif
