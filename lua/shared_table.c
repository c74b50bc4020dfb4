/*
** shared_table.c — skein.shared.table: a Manager-style dict/list that every
** worker holding a handle reads and writes in place.
**
** Values are marshalled in (a value that cannot cross fails with kind
** "marshal", naming its path) and decoded out, so a reader gets its own
** copy. Keys are strings, numbers or booleans; a float with an integer value
** is that integer (as in Lua: t[1.0] is t[1]). Iteration order is insertion
** order (like a Python dict): the table is a compact hash, an index of
** int32 slots pointing into a dense array of entries.
**
** Layout (runtime/host/sk_stable.h, stable.c): a fixed-size header (the
** sk_obj, one mutex, counters, the hash key) and one *store* block holding
** the index then the entries; each entry's string key and value are
** immutable blobs. A reader retains a blob under the mutex and decodes it
** after unlocking; a writer encodes before locking and swaps the blob in.
** So no Lua code runs, and nothing raises, while the mutex is held.
**
** Atomic read-modify-write (t:update(k, fn)) *claims* the entry: while the
** claim lasts, other updates and writes of that key wait (through the
** shared-object wait protocol), reads see the last stored value. The claim
** belongs to an update guard, a to-be-closed userdata on the updating call's
** stack: fn returning stores its result and ends the claim; fn raising, the
** coroutine being closed, or (last resort) the guard being collected ends it
** without storing. fn may yield: the entry stays claimed until it resumes
** and returns.
**
** Across processes: the header, the store and the blobs all live in the
** shared segment (sk_shm.h), linked by offsets, so every process and worker
** works on the same table. A process that dies holding the mutex may leave
** an entry half added: the next locker rebuilds the index (repair). A claim
** held by a process that died is dropped (table_gone), as if its update
** function had raised.
**
** Lock order: the table's mutex, then a port's lock (to wake waiters).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/core/sk_siphash.h"
#include "sk_shared.h"
#include "../runtime/host/sk_stable.h"

#define TABLE_MT "skein.shared.Table"
#define GUARD_MT "skein.shared.UpdateGuard"
#define SNAP_MT "skein.shared.Snapshot"

/* ----------------------------------------------------------------- keys */

/* Fills *k from the Lua value at idx; returns NULL, or why it is no key.
** Never raises or allocates. */
static const char *key_from_lua(lua_State *L, int idx, const sk_table *t, skey *k) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      k->tag = K_STR;
      k->u.s.p = lua_tolstring(L, idx, &k->u.s.len);
      k->hash = sk_siphash(t->hkey, k->u.s.p, k->u.s.len);
      return NULL;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        k->tag = K_INT;
        k->u.i = lua_tointeger(L, idx);
      } else {
        lua_Number n = lua_tonumber(L, idx);
        if (isnan(n)) return "a shared table key cannot be NaN";
        if (n >= -0x1p63 && n < 0x1p63 && floor(n) == n) {
          k->tag = K_INT;
          k->u.i = (lua_Integer)n;
        } else {
          k->tag = K_FLOAT;
          k->u.n = n;
          uint64_t bits;
          memcpy(&bits, &n, sizeof bits);
          k->hash = mix(bits ^ 0x2545f4914f6cdd1dULL);
          return NULL;
        }
      }
      k->hash = mix((uint64_t)k->u.i);
      return NULL;
    case LUA_TBOOLEAN:
      k->tag = K_BOOL;
      k->u.b = lua_toboolean(L, idx);
      k->hash = mix(0x9e3779b97f4a7c15ULL + (uint64_t)k->u.b);
      return NULL;
    case LUA_TNIL:
    case LUA_TNONE: return "a shared table key cannot be nil";
    default: return "shared table keys must be strings, numbers or booleans";
  }
}

static void check_key(lua_State *L, int idx, const sk_table *t, skey *k) {
  const char *why = key_from_lua(L, idx, t, k);
  if (why) luaL_error(L, "%s (got %s)", why, luaL_typename(L, idx));
}

static int is_ident(const char *s, size_t n) {
  static const char *const reserved[] = {
      "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
      "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL};
  if (n == 0 || strlen(s) != n || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
      return 0;
    }
  }
  for (int i = 0; reserved[i]; i++) {
    if (strcmp(reserved[i], s) == 0) return 0;
  }
  return 1;
}

/* Pushes how errors name the entry at key idx: "t.name", "t[1]",
** "t[\"a b\"]", and returns it. */
static const char *push_key_path(lua_State *L, int idx, const char *root) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (is_ident(s, n)) return lua_pushfstring(L, "%s.%s", root, s);
    return lua_pushfstring(L, "%s[\"%s\"]", root, s);
  }
  lua_pushvalue(L, idx);
  const char *k = luaL_tolstring(L, -1, NULL);
  const char *path = lua_pushfstring(L, "%s[%s]", root, k);
  lua_replace(L, -3);
  lua_pop(L, 1);
  return path;
}

/* ------------------------------------------------------------ the object */

static void tlock(sk_table *t) {
  if (sk_shm_lock(&t->w.lock)) sk_stable_repair(t);
}

static void tunlock(sk_table *t) { sk_xw_unlock(&t->w); }

/* A claim whose process died ends without storing; the table's waiters
** get another look. */
static void table_gone(sk_shm_obj *o) {
  sk_table *t = (sk_table *)o;
  tlock(t);
  sk_xw_purge(&t->w);
  sentry *es = tentries(t);
  for (uint32_t e = 0; e < t->nent; e++) {
    if (es[e].tag == K_DEAD || es[e].claim == 0) continue;
    if (sk_shm_proc_live(es[e].claim_proc, es[e].claim_pgen)) continue;
    es[e].claim = 0;
    if (es[e].val == 0) {
      /* Its index slot, found by entry number along its probe sequence. */
      uint32_t islot = (uint32_t)es[e].hash & (t->isize - 1), probes = 0;
      while (tindex(t)[islot] != (int32_t)e && ++probes < t->isize) {
        islot = (islot + 1) & (t->isize - 1);
      }
      if (probes < t->isize) sk_stable_remove(t, (int32_t)e, islot);
    }
  }
  sk_xw_wake_all(&t->w);
  tunlock(t);
}

static void table_free(sk_shm_obj *o) {
  sk_table *t = (sk_table *)o;
  sentry *es = tentries(t);
  for (uint32_t e = 0; e < t->nent; e++) {
    if (es[e].tag == K_DEAD) continue;
    if (es[e].tag == K_STR) sk_blob_release(blob_at(es[e].key.s));
    sk_blob_release(blob_at(es[e].val));
  }
  sk_shm_free(sk_shm_ptr(t->store));
  sk_xw_free(&t->w);
}

static const sk_shm_type table_shm_type = {table_gone, table_free};
static const sk_shm_ops table_shm = {SK_SHM_TABLE, sk_xobj_shared, sk_xobj_shared, sk_xobj_view};
static const sk_objtype table_type = {TABLE_MT, sk_xobj_destroy, &table_shm};

static void push_table(lua_State *L, sk_obj *o) { sk_handle_push(L, o, TABLE_MT); }

static sk_table *check_table(lua_State *L, int idx) {
  return SK_XSTATE(sk_table, sk_handle_check(L, idx, TABLE_MT));
}

/* Whether the claim of entry `e` is the context's (its process, worker
** port id and wake slot). */
typedef struct claimer {
  uint32_t proc, pgen, port, slot;
} claimer;

static void claimer_of(lua_State *L, sk_ctx *c, claimer *who) {
  sk_port *port;
  uint32_t slot;
  sk_ctx_identity(L, c, &port, &slot);
  who->proc = (uint32_t)sk_shm_self();
  who->pgen = sk_shm_self_gen();
  who->port = sk_port_id(port);
  who->slot = slot;
}

static int claim_is(const sentry *e, const claimer *who) {
  return e->claim_proc == who->proc && e->claim_pgen == who->pgen &&
         e->claim_port == who->port && e->claim_slot == who->slot;
}

/* A write (set, append) or an update of a key, as its wait source sees it:
** ready when no other context has claimed the key. On the C stack for the
** first look, which does not wait unless the key is claimed; a call that
** waits copies it into a userdata on top of the stack, where it stays
** while the wait lasts (a string key points into the string at index 2). */
typedef struct probe {
  sk_table *t;
  skey k;
  int append;                   /* the key is border + 1, whatever it is now */
} probe;

/* Whether the key is free (called with the lock held). */
static int key_unclaimed(void *p) {
  probe *pr = p;
  if (pr->append) {
    pr->k.u.i = pr->t->border + 1;
    pr->k.hash = mix((uint64_t)pr->k.u.i);
  }
  int32_t e = sk_stable_find(pr->t, &pr->k, NULL);
  return e < 0 || tentries(pr->t)[e].claim == 0;
}

static int claim_link(void *obj, sk_ctx *c, int round) {
  probe *pr = obj;
  (void)round;
  return sk_xw_link(c, &pr->t->w, key_unclaimed, pr);
}

static int claim_unlink(void *obj, sk_ctx *c) { return sk_xw_unlink(c, &((probe *)obj)->t->w); }

/* Waits on `src` over a copy of *pr. */
static int wait_unclaimed(lua_State *L, const sk_source *src, const probe *pr) {
  probe *p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = *pr;
  return sk_wait_on(L, src, p, SK_NO_DEADLINE, 0);
}

static int raise_own_claim(lua_State *L, int kidx) {
  return sk_error_raise(L, "deadlock", "%s is being updated by this task: return its new value from the "
                    "update function instead of writing it (or updating it again)",
                    push_key_path(L, kidx, "t"));
}

/* Stores the value of set (stack: t, k, v) or append (t, v) unless
** another context has claimed the key (SK_WAIT_MORE): the attempt of the
** write source (there is no deadline). */
static int table_write(lua_State *L, void *obj, int round, int expired) {
  probe *pr = obj;
  sk_table *t = pr->t;
  (void)round;
  (void)expired;
  int vidx = pr->append ? 2 : 3, top = lua_gettop(L);
  claimer who;
  claimer_of(L, sk_current(L), &who);
  sk_blob *nv = NULL, *old = NULL;
  if (!lua_isnil(L, vidx)) {
    const char *name = pr->append ? "t[#t+1]" : push_key_path(L, 2, "t");
    if (sk_blob_encode(L, vidx, name, &nv) != 0) return lua_error(L);
    lua_settop(L, top);
  }
  enum { DONE, BUSY, MINE, NOMEM } r = DONE;
  tlock(t);
  if (key_unclaimed(pr)) {
    if (sk_stable_store(t, &pr->k, nv, &old) != 0) r = NOMEM;
  } else {
    const sentry *e = &tentries(t)[sk_stable_find(t, &pr->k, NULL)];
    r = claim_is(e, &who) ? MINE : BUSY;
  }
  tunlock(t);
  sk_blob_release(old);
  if (r != DONE) sk_blob_release(nv);
  switch (r) {
    case DONE:
      if (!pr->append) return 0;
      lua_pushinteger(L, pr->k.u.i);
      return 1;
    case MINE:
      if (!pr->append) return raise_own_claim(L, 2);
      lua_pushinteger(L, pr->k.u.i);
      return raise_own_claim(L, lua_gettop(L));
    case NOMEM: return sk_error_raise(L, "memory", "not enough memory to store into a shared table");
    default: return SK_WAIT_MORE;
  }
}

static const sk_source write_source = {
    .name = TABLE_MT, .attempt = table_write, .link = claim_link, .unlink = claim_unlink};

/* t:set(k, v) / t.k = v: v == nil deletes k */
static int l_table_set(lua_State *L) {
  probe pr = {check_table(L, 1), {0}, 0};
  check_key(L, 2, pr.t, &pr.k);
  lua_settop(L, 3);
  int n = table_write(L, &pr, 0, 0);
  return n != SK_WAIT_MORE ? n : wait_unclaimed(L, &write_source, &pr);
}

/* t:append(v) -> the key it got (#t + 1) */
static int l_table_append(lua_State *L) {
  probe pr = {check_table(L, 1), {.tag = K_INT}, 1};
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "cannot append nil");
  lua_settop(L, 2);
  int n = table_write(L, &pr, 0, 0);
  return n != SK_WAIT_MORE ? n : wait_unclaimed(L, &write_source, &pr);
}

/* t:get(k) -> a copy of the value stored under k, or nil */
static int l_table_get(lua_State *L) {
  sk_table *t = check_table(L, 1);
  skey k;
  check_key(L, 2, t, &k);
  tlock(t);
  int32_t e = sk_stable_find(t, &k, NULL);
  sk_blob *v = e >= 0 ? blob_at(tentries(t)[e].val) : NULL;
  if (v) sk_blob_retain(v);
  tunlock(t);
  if (v == NULL) lua_pushnil(L);
  else sk_blob_push_value(L, v);
  return 1;
}

/* t:len() / #t -> n such that keys 1..n all have values and n + 1 has none */
static int l_table_len(lua_State *L) {
  sk_table *t = check_table(L, 1);
  tlock(t);
  lua_Integer n = t->border;
  tunlock(t);
  lua_pushinteger(L, n);
  return 1;
}

/* t.k: methods first, then the entry (t:get works for every key) */
static int l_table_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  return l_table_get(L);
}

/* ---------------------------------------------------------------- update */

/* The claim an update holds; its user value is the key. */
typedef struct guard {
  sk_obj *o;                    /* the table's view, counted; NULL once closed */
  uint64_t token;               /* 0: holds no claim */
} guard;

/* Ends the claim the guard at idx holds without storing anything. */
static void guard_release(lua_State *L, int idx) {
  guard *g = luaL_checkudata(L, idx, GUARD_MT);
  if (g->o == NULL) return;
  sk_table *t = SK_XSTATE(sk_table, g->o);
  if (g->token) {
    skey k;
    lua_getiuservalue(L, idx, 1);
    if (key_from_lua(L, -1, t, &k) == NULL) {
      tlock(t);
      uint32_t islot;
      int32_t e = sk_stable_find(t, &k, &islot);
      if (e >= 0 && tentries(t)[e].claim == g->token) {
        tentries(t)[e].claim = 0;
        if (tentries(t)[e].val == 0) sk_stable_remove(t, e, islot);
        sk_xw_wake_all(&t->w);
      }
      tunlock(t);
    }
    lua_pop(L, 1);
    g->token = 0;
  }
  sk_obj *o = g->o;
  g->o = NULL;
  sk_obj_release(o);
}

static int l_guard_close(lua_State *L) {
  guard_release(L, 1);
  return 0;
}

/* fn has returned its new value (stack: t, k, fn, guard, new): store it and
** end the claim in one step. Also the continuation of a call of fn that
** yields. */
static int update_commit(lua_State *L, int status, lua_KContext kctx) {
  sk_table *t = check_table(L, 1);
  (void)status;
  (void)kctx;
  guard *g = lua_touserdata(L, 4);
  sk_blob *nv = NULL, *old = NULL;
  if (!lua_isnil(L, 5)) {
    /* A value that cannot cross raises here; the guard ends the claim. */
    if (sk_blob_encode(L, 5, push_key_path(L, 2, "t"), &nv) != 0) return lua_error(L);
    lua_settop(L, 5);
  }
  skey k;
  check_key(L, 2, t, &k);
  tlock(t);
  uint32_t islot;
  int32_t e = sk_stable_find(t, &k, &islot);
  int ours = e >= 0 && tentries(t)[e].claim == g->token;
  if (ours) {
    sentry *en = &tentries(t)[e];
    en->claim = 0;
    if (nv == NULL) {
      old = sk_stable_remove(t, e, islot);
    } else {
      old = blob_at(en->val);
      en->val = sk_shm_off(nv);
      if (old == NULL) sk_stable_became_live(t, en);
    }
    sk_xw_wake_all(&t->w);
  }
  tunlock(t);
  g->token = 0;
  sk_blob_release(old);
  if (!ours) {
    sk_blob_release(nv);
    return luaL_error(L, "shared table update lost its claim (internal error)");
  }
  return 1;
}

/* Claims the key of an update (stack: t, k, fn, guard) unless another
** context has claimed it (SK_WAIT_MORE), then calls fn(current value) and
** commits (update_commit continues a call of fn that yields): the attempt
** of the claim source. */
static int table_claim(lua_State *L, void *obj, int round, int expired) {
  probe *pr = obj;
  sk_table *t = pr->t;
  (void)round;
  (void)expired;
  guard *g = lua_touserdata(L, 4);
  claimer who;
  claimer_of(L, sk_current(L), &who);
  enum { CLAIMED, BUSY, MINE, NOMEM } r = CLAIMED;
  uint64_t token = 0;
  sk_blob *cur = NULL;
  tlock(t);
  int32_t e = sk_stable_find(t, &pr->k, NULL);
  if (e >= 0 && tentries(t)[e].claim) {
    r = claim_is(&tentries(t)[e], &who) ? MINE : BUSY;
  } else {
    if (e < 0) e = sk_stable_insert(t, &pr->k);
    if (e < 0) {
      r = NOMEM;
    } else {
      sentry *en = &tentries(t)[e];
      en->claim_proc = who.proc;
      en->claim_pgen = who.pgen;
      en->claim_port = who.port;
      en->claim_slot = who.slot;
      en->claim = token = ++t->tokens;
      cur = blob_at(en->val);
      if (cur) sk_blob_retain(cur);
    }
  }
  tunlock(t);
  if (r == BUSY) return SK_WAIT_MORE;
  if (r == MINE) return raise_own_claim(L, 2);
  if (r == NOMEM) return sk_error_raise(L, "memory", "not enough memory to update a shared table");
  g->token = token;  /* from here on the guard ends the claim */
  lua_settop(L, 4);
  lua_pushvalue(L, 3);
  if (cur) sk_blob_push_value(L, cur);
  else lua_pushnil(L);
  lua_callk(L, 1, 1, 0, update_commit);
  return update_commit(L, LUA_OK, 0);
}

static const sk_source claim_source = {
    .name = TABLE_MT, .attempt = table_claim, .link = claim_link, .unlink = claim_unlink};

/* t:update(k, fn) -> new: stores fn(current value) under k atomically with
** respect to every other update and write of k (nil deletes). */
static int l_table_update(lua_State *L) {
  sk_obj *o = sk_handle_check(L, 1, TABLE_MT);
  probe pr = {SK_XSTATE(sk_table, o), {0}, 0};
  check_key(L, 2, pr.t, &pr.k);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  guard *g = lua_newuserdatauv(L, sizeof *g, 1);
  g->o = NULL;
  g->token = 0;
  luaL_setmetatable(L, GUARD_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 4, 1);
  sk_obj_retain(o);
  g->o = o;
  lua_toclose(L, 4);
  int n = table_claim(L, &pr, 0, 0);
  return n != SK_WAIT_MORE ? n : wait_unclaimed(L, &claim_source, &pr);
}

/* ------------------------------------------------------------ snapshots */

typedef struct snap_item {
  int tag;
  union {
    lua_Integer i;
    lua_Number n;
    int b;
    sk_blob *s;
  } key;
  sk_blob *val;
} snap_item;

/* Every live entry, in order, with its blobs retained; a userdata so that a
** raise while converting it frees it. */
typedef struct snapshot {
  uint32_t n, next;
  snap_item *items;
} snapshot;

static int l_snap_gc(lua_State *L) {
  snapshot *s = luaL_checkudata(L, 1, SNAP_MT);
  for (uint32_t i = 0; i < s->n; i++) {
    if (s->items[i].tag == K_STR) sk_blob_release(s->items[i].key.s);
    sk_blob_release(s->items[i].val);
  }
  free(s->items);
  s->items = NULL;
  s->n = 0;
  return 0;
}

static snapshot *push_snapshot(lua_State *L, sk_table *t) {
  snapshot *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SNAP_MT);
  tlock(t);
  uint32_t n = t->nlive;
  s->items = n ? malloc(n * sizeof *s->items) : NULL;
  if (s->items) {
    const sentry *es = tentries(t);
    for (uint32_t e = 0; e < t->nent && s->n < n; e++) {
      if (es[e].tag == K_DEAD || es[e].val == 0) continue;
      snap_item *it = &s->items[s->n++];
      it->tag = es[e].tag;
      switch (it->tag) {
        case K_INT: it->key.i = es[e].key.i; break;
        case K_FLOAT: it->key.n = es[e].key.n; break;
        case K_BOOL: it->key.b = es[e].key.b; break;
        default: it->key.s = blob_at(es[e].key.s); sk_blob_retain(it->key.s); break;
      }
      it->val = blob_at(es[e].val);
      sk_blob_retain(it->val);
    }
  }
  tunlock(t);
  if (n && s->items == NULL) sk_error_raise(L, "memory", "not enough memory to copy a shared table");
  return s;
}

static void push_snap_key(lua_State *L, const snap_item *it) {
  switch (it->tag) {
    case K_INT: lua_pushinteger(L, it->key.i); break;
    case K_FLOAT: lua_pushnumber(L, it->key.n); break;
    case K_BOOL: lua_pushboolean(L, it->key.b); break;
    default: lua_pushlstring(L, sk_blob_data(it->key.s), it->key.s->len); break;
  }
}

static void push_snap_value(lua_State *L, const snap_item *it) {
  sk_blob_retain(it->val);
  sk_blob_push_value(L, it->val);
}

/* t:keys() -> list of keys in insertion order */
static int l_table_keys(lua_State *L) {
  snapshot *s = push_snapshot(L, check_table(L, 1));
  lua_createtable(L, (int)s->n, 0);
  for (uint32_t i = 0; i < s->n; i++) {
    push_snap_key(L, &s->items[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* t:totable() -> a plain table holding copies of every entry */
static int l_table_totable(lua_State *L) {
  snapshot *s = push_snapshot(L, check_table(L, 1));
  lua_createtable(L, 0, (int)(s->n < 1u << 20 ? s->n : 1u << 20));
  for (uint32_t i = 0; i < s->n; i++) {
    push_snap_key(L, &s->items[i]);
    push_snap_value(L, &s->items[i]);
    lua_rawset(L, -3);
  }
  return 1;
}

static int snap_next(lua_State *L) {
  snapshot *s = lua_touserdata(L, lua_upvalueindex(1));
  if (s->next >= s->n) return 0;
  const snap_item *it = &s->items[s->next++];
  push_snap_key(L, it);
  push_snap_value(L, it);
  return 2;
}

/* t:pairs() / pairs(t) -> iterator over the entries as they were when it
** was called, in insertion order */
static int l_table_pairs(lua_State *L) {
  push_snapshot(L, check_table(L, 1));
  lua_pushcclosure(L, snap_next, 1);
  return 1;
}

static int l_table_tostring(lua_State *L) {
  sk_handle *h = luaL_checkudata(L, 1, TABLE_MT);
  if (h->obj == NULL) {
    lua_pushliteral(L, "skein.shared.table (closed)");
    return 1;
  }
  sk_table *t = SK_XSTATE(sk_table, h->obj);
  tlock(t);
  lua_Integer n = t->nlive, border = t->border;
  tunlock(t);
  lua_pushfstring(L, "skein.shared.table(%I entries, #t = %I)", (LUAI_UACINT)n, (LUAI_UACINT)border);
  return 1;
}

/* ------------------------------------------------------------ creation */

/* Stores init[k] (key at kidx, value at kidx + 1, the top) into the new
** table t; leaves the stack as it was. */
static void init_entry(lua_State *L, sk_table *t, int kidx) {
  skey k;
  check_key(L, kidx, t, &k);
  sk_blob *nv, *old;
  if (sk_blob_encode(L, kidx + 1, push_key_path(L, kidx, "init"), &nv) != 0) lua_error(L);
  lua_settop(L, kidx + 1);
  tlock(t);
  int rc = sk_stable_store(t, &k, nv, &old);
  tunlock(t);
  sk_blob_release(old);
  if (rc != 0) {
    sk_blob_release(nv);
    sk_error_raise(L, "memory", "not enough memory for a shared table");
  }
}

/* skein.shared.table([init]) -> table holding copies of init's entries
** (its sequence first, in order) */
static int l_table_new(lua_State *L) {
  luaL_argcheck(L, lua_isnoneornil(L, 1) || lua_type(L, 1) == LUA_TTABLE, 1, "table or nil");
  lua_settop(L, 1);
  sk_obj *o = sk_xobj_new(L, &table_type, sizeof(sk_table));
  sk_table *t = SK_XSTATE(sk_table, o);
  sk_xw_init(&t->w);
  t->ecap = 8;
  sk_stable_hash_key(t->hkey);
  push_table(L, o);  /* from here a raise frees the table through its handle */
  char *store = sk_stable_store_new(8, &t->isize);
  if (store == NULL) return sk_error_raise(L, "memory", "not enough memory for a shared table");
  t->store = sk_shm_off(store);
  if (lua_istable(L, 1)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_pushinteger(L, i);
      if (lua_rawgeti(L, 1, i) == LUA_TNIL) {
        lua_pop(L, 2);
        continue;
      }
      init_entry(L, t, lua_gettop(L) - 1);
      lua_pop(L, 2);
    }
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 && lua_tointeger(L, -2) <= n) {
        lua_pop(L, 1);
        continue;
      }
      init_entry(L, t, lua_gettop(L) - 1);
      lua_pop(L, 1);
    }
  }
  return 1;
}

/* ----------------------------------------------------------------- open */

void sk_shared_table_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"get", l_table_get},       {"set", l_table_set},         {"update", l_table_update},
      {"append", l_table_append}, {"len", l_table_len},         {"keys", l_table_keys},
      {"totable", l_table_totable}, {"pairs", l_table_pairs},   {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__eq", sk_handle_eq},     {"__newindex", l_table_set},
                                  {"__len", l_table_len},    {"__pairs", l_table_pairs},
                                  {NULL, NULL}};
  static const sk_type types[] = {
      {.name = TABLE_MT, .methods = methods, .index = l_table_index, .gc = sk_handle_release,
       .close = sk_handle_release, .tostring = l_table_tostring, .meta = meta,
       .push = push_table},
      {.name = GUARD_MT, .gc = l_guard_close, .close = l_guard_close},
      {.name = SNAP_MT, .gc = l_snap_gc}};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) sk_type_register(L, &types[i]);
  sk_xobj_register(&table_type);
  sk_shm_register_type(SK_SHM_TABLE, &table_shm_type);
  lua_getfield(L, -1, "shared");          /* sk_shared_open made it */
  lua_pushcfunction(L, l_table_new);
  lua_setfield(L, -2, "table");
  lua_pop(L, 1);
}
