/* config_impl.h: the config.json pieces that config.c (DistilBERT) and
 * bert_config.c (BERT) share: opening the JSON with its model_type checked,
 * reading typed keys, and writing the keys every model type writes alike
 * (problem_type, labels, architectures, dtype). Internal to the two parsers.
 */
#ifndef MB_CONFIG_IMPL_H
#define MB_CONFIG_IMPL_H

#include <jansson.h>

#include "config.h"

/* text parsed as a JSON object whose model_type, when present, is
   model_type; NULL and err set otherwise ("SRC: not valid JSON: ..."). */
json_t *mb_config_json_open(const char *text, size_t len, const char *src, const char *model_type, mb_error *err);

/* The key's value into *out when present and not null; an error naming src
   and the key for a wrong type (or, required, a missing key). */
mb_status mb_config_json_int(json_t *root, const char *key, int required, int *out, const char *src, mb_error *err);
mb_status mb_config_json_float(json_t *root, const char *key, float *out, const char *src, mb_error *err);

/* A float written in its shortest decimal form (0.1, not 0.10000000149011612). */
json_t *mb_config_json_real(float x);

/* Set problem_type (when set or not the default), id2label, label2id,
   architectures [architecture] (when given) and torch_dtype, then serialise
   root as Hugging Face does (sorted keys, indent 2) and release it. */
char *mb_config_json_finish(json_t *root, const mb_distilbert_config *c, const char *architecture, mb_error *err);

#endif
