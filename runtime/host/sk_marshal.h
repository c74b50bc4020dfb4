/*
** sk_marshal.h — what the three parts of the marshaller share, and nothing
** else includes: the format's constants and tags (the format itself is
** described in marshal.c), and the trust decisions made in marshal_auth.c
** (the tags that authenticate code and module names, the registry of types
** that may be sent by reference, the stand-ins of another process's
** objects). marshal_enc.c encodes, marshal.c decodes.
*/
#ifndef SK_MARSHAL_H
#define SK_MARSHAL_H

#include "sk_lua.h"

#define SK_MARSHAL_FORMAT 3     /* the version byte */
#define SK_MARSHAL_MAX_DEPTH 200

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_TABLE_MT, T_END,
  T_REF, T_LFUNC, T_CFUNC, T_OBJ, T_GLOBALS, T_MODULE, T_SHM, T_HOST
};

/* A T_HOST value's mode byte: a clone's bytes, or a pointer by reference. */
enum { SK_HOST_CLONE = 'c', SK_HOST_REF = 'r' };

/* The push function of the sendable type `name` (sk_marshal_register_type),
** or NULL; *canonical, when given, gets the registered name's own copy. */
sk_obj_push sk_marshal_find_type(const char *name, const char **canonical);

/* The stand-ins of another process's objects (sk_marshal_set_proxy), or
** NULL: set once at start-up, before any worker exists; read-only after. */
extern const sk_marshal_proxy *sk_marshal_stand_ins;

/* Pushes a factory for the function whose (authenticated) bytecode is
** code[0..n) and which has `nups` upvalues: each call of it returns a new
** closure of that prototype with fresh upvalues, without loading the
** bytecode again (protofactory.c). Returns 0 and pushes nothing when it
** cannot make one (an unexpected format): load the bytecode instead. */
int sk_proto_factory(lua_State *L, const char *code, size_t n, int nups);

#endif
