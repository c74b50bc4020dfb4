/*
** shared.c — placeholder: filled in by the work on channels and shared state.
*/
#include "sk_lua.h"

void sk_shared_open(lua_State *L) { (void)L; }
