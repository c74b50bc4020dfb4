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

/* Checks a name (`what`: "name" or "metatable name"): 1..NAME_MAX_LEN
** bytes, not one of skein's own. Returns 0 when it is fine, else -1 with
** why not in msg. */
static int bad_name(const char *name, const char *what, char *msg, size_t n) {
  const char *why = NULL;
  if (name == NULL || name[0] == '\0') why = "is missing";
  else if (strlen(name) > NAME_MAX_LEN) why = "is longer than 127 bytes";
  else if (strncmp(name, "skein.", 6) == 0) why = "starts with \"skein.\", as skein's own do";
  if (why == NULL) return 0;
  snprintf(msg, n, "skein_register_type: the %s %s", what, why);
  return -1;
}

int skein_register_type(skein_runtime *rt, const skein_type_ops *ops) {
  char msg[256];
  if (ops == NULL) return sk_runtime_fail(rt, "skein_register_type: no descriptor");
  if (bad_name(ops->name, "name", msg, sizeof msg) != 0 ||
      (ops->metatable && bad_name(ops->metatable, "metatable name", msg, sizeof msg) != 0)) {
    return sk_runtime_fail(rt, msg);
  }
  int nclone = (ops->encode != NULL) + (ops->decode != NULL);
  int nref = (ops->pointer != NULL) + (ops->retain != NULL) + (ops->release != NULL) +
             (ops->push != NULL);
  const char *why;
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
