/* fuzz_config.c: libFuzzer target for the DistilBERT config.json parser
 * (runtime/config.c): parse, and for accepted configs validate, copy and
 * serialise, then parse the serialised form again (it must be accepted). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mb_distilbert_config cfg, copy, again;
    mb_error err;
    if (mb_config_parse(&cfg, (const char *)data, size, "config.json", &err) != MB_OK) return 0;
    if (mb_config_copy(&copy, &cfg, &err) == MB_OK) {
        char *s = mb_config_to_json(&copy, "DistilBertForSequenceClassification", &err);
        if (s) {
            /* what we write, we read back */
            if (mb_config_parse(&again, s, strlen(s), "saved", &err) != MB_OK) abort();
            if (again.num_labels != cfg.num_labels || again.dim != cfg.dim) abort();
            mb_config_free(&again);
            free(s);
        }
        mb_config_free(&copy);
    }
    mb_config_free(&cfg);
    return 0;
}
