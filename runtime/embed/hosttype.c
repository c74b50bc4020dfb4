/*
** hosttype.c — skein_register_type and skein_write (skein.h): a host's
** userdata made sendable. This checks the host's descriptor and hands it to
** the marshaller's registry of host types (sk_marshal_register_host,
** host/marshal_auth.c); the encoder and decoder (host/marshal_enc.c,
** host/marshal.c) call the host's callbacks.
*/
#include <stdio.h>
#include <string.h>

#include "../host/sk_lua.h"
#include "sk_embed.h"

#define NAME_MAX_LEN 127

int skein_write(skein_writer *w, const void *data, size_t n) {
  if (w == NULL || w->failed) return -1;
  if (n == 0) return 0;
  if (data == NULL || sk_buf_append(w->b, data, n) != 0) {
    w->failed = 1;
    return -1;
  }
  return 0;
}

/* Checks a name: 1..NAME_MAX_LEN bytes, not one of skein's own. NULL when
** it is fine, else why not. */
static const char *bad_name(const char *name, const char *what) {
  static const char *msgs[][3] = {
      {"skein_register_type: the name is missing", "skein_register_type: the name is longer than 127 bytes",
       "skein_register_type: names starting with \"skein.\" are skein's own"},
      {"skein_register_type: the metatable name is empty",
       "skein_register_type: the metatable name is longer than 127 bytes",
       "skein_register_type: metatable names starting with \"skein.\" are skein's own"}};
  int k = strcmp(what, "name") == 0 ? 0 : 1;
  if (name == NULL || name[0] == '\0') return msgs[k][0];
  if (strlen(name) > NAME_MAX_LEN) return msgs[k][1];
  if (strncmp(name, "skein.", 6) == 0) return msgs[k][2];
  return NULL;
}

int skein_register_type(skein_runtime *rt, const skein_type_ops *ops) {
  if (ops == NULL) return sk_runtime_fail(rt, "skein_register_type: no descriptor");
  const char *why = bad_name(ops->name, "name");
  if (why == NULL && ops->metatable) why = bad_name(ops->metatable, "metatable");
  if (why) return sk_runtime_fail(rt, why);
  int clone = ops->encode != NULL, nclone = clone + (ops->decode != NULL);
  int ref = ops->pointer != NULL;
  int nref = ref + (ops->retain != NULL) + (ops->release != NULL) + (ops->push != NULL);
  char msg[256];
  if (nclone == 1) {
    snprintf(msg, sizeof msg, "skein_register_type: %s: encode and decode go together",
             ops->name);
    return sk_runtime_fail(rt, msg);
  }
  if (nref != 0 && nref != 4) {
    snprintf(msg, sizeof msg, "skein_register_type: %s: pointer, retain, release and push "
             "go together", ops->name);
    return sk_runtime_fail(rt, msg);
  }
  if (nclone == 0 && nref == 0) {
    snprintf(msg, sizeof msg, "skein_register_type: %s: neither clone callbacks (encode, "
             "decode) nor reference callbacks (pointer, retain, release, push)", ops->name);
    return sk_runtime_fail(rt, msg);
  }
  sk_embed_init();
  if (sk_marshal_register_host(ops, &why) != 0) {
    snprintf(msg, sizeof msg, "skein_register_type: %s: %s", ops->name, why);
    return sk_runtime_fail(rt, msg);
  }
  return 0;
}
