/* test_manifest.c: the checkpoint manifest (runtime/manifest.c) and durable writes
 * (runtime/fsutil.c). The reference for digests is coreutils' sha256sum: a
 * manifest written here must verify with `sha256sum -c` once its two comment
 * lines are dropped; corrupting, truncating or removing a listed file must make
 * mb_manifest_verify fail with the file's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/fsutil.h"
#include "../../runtime/manifest.h"
#include "harness.h"

static char tmpdir[256];

static void put(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
}

TEST(parse_accepts_the_canonical_form_only) {
    const char *ok = "# moonbert checkpoint manifest v1\n"
                     "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  a/config.json\n"
                     "# end 1 files\n";
    mb_manifest m;
    mb_error err = {0};
    CHECK(mb_manifest_parse(&m, ok, strlen(ok), "m", &err) == MB_OK, "%s", err.msg);
    CHECK(m.n == 1 && strcmp(m.entries[0].path, "a/config.json") == 0, "entries");
    char *text = mb_manifest_format(&m, &err);
    CHECK(text && strcmp(text, ok) == 0, "round trip: %s", text ? text : err.msg);
    free(text);
    mb_manifest_free(&m);
    const char *bad[] = {
        "",                                                        /* empty */
        "# moonbert checkpoint manifest v1\n",                     /* no end line */
        "# moonbert checkpoint manifest v1\n# end 0 files\n",      /* no files */
        "# moonbert checkpoint manifest v1\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  x\n", /* cut at a line end */
        "# moonbert checkpoint manifest v1\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  x\n# end 2 files\n",
        "# moonbert checkpoint manifest v1\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  ../x\n# end 1 files\n",
        "# moonbert checkpoint manifest v1\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  /etc/passwd\n# end 1 files\n",
        "# moonbert checkpoint manifest v1\n"
        "CA978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  x\n# end 1 files\n",
        "# moonbert checkpoint manifest v1\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  x\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  x\n# end 2 files\n",
        "# moonbert checkpoint manifest v1\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  a//b\n# end 1 files\n",
        "# moonbert checkpoint manifest v1\n"
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  manifest.sha256\n# end 1 files\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = '\0';
        CHECK(mb_manifest_parse(&m, bad[i], strlen(bad[i]), "m", &err) != MB_OK, "case %zu accepted", i);
        CHECK(err.msg[0] != '\0' && m.n == 0, "case %zu", i);
    }
    /* NUL bytes and a CR after the end line's text (fuzz_manifest's first finding) */
    static const char nul_end[] = "# moonbert checkpoint manifest v1\n"
                                  "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  x\n"
                                  "# end 1 files\0\0\r\n";
    CHECK(mb_manifest_parse(&m, nul_end, sizeof nul_end - 1, "m", &err) != MB_OK, "NULs in the end line accepted");
}

TEST(written_manifest_verifies_with_sha256sum_and_catches_damage) {
    put("config.json", "{\"dim\": 4}\n");
    put("model.safetensors", "0123456789abcdef");
    const char *files[] = {"config.json", "model.safetensors"};
    mb_error err = {0};
    CHECK(mb_manifest_write(tmpdir, files, 2, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_manifest_verify(tmpdir, &err) == MB_OK, "%s", err.msg);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && grep -v '^#' manifest.sha256 | sha256sum --quiet --strict -c -", tmpdir);
    CHECK(system(cmd) == 0, "sha256sum -c disagrees");

    put("model.safetensors", "0123456789abcdeX"); /* one byte flipped */
    CHECK(mb_manifest_verify(tmpdir, &err) != MB_OK, "a flipped byte verified");
    CHECK(strstr(err.msg, "model.safetensors") != NULL, "%s", err.msg);
    put("model.safetensors", "0123456789"); /* truncated */
    CHECK(mb_manifest_verify(tmpdir, &err) != MB_OK && strstr(err.msg, "model.safetensors"), "%s", err.msg);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    unlink(p);
    CHECK(mb_manifest_verify(tmpdir, &err) != MB_OK && strstr(err.msg, "config.json") && strstr(err.msg, "missing"),
          "%s", err.msg);
}

TEST(durable_write_replaces_whole_files_and_reports_the_cause) {
    char p[512];
    snprintf(p, sizeof p, "%s/state.json", tmpdir);
    mb_error err = {0};
    CHECK(mb_write_file_durable(p, "one", 3, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_write_file_durable(p, "two!", 4, &err) == MB_OK, "%s", err.msg);
    FILE *f = fopen(p, "rb");
    char buf[16] = {0};
    CHECK(f && fread(buf, 1, sizeof buf, f) == 4 && strcmp(buf, "two!") == 0, "got '%s'", buf);
    if (f) fclose(f);
    snprintf(p, sizeof p, "%s/state.json.tmp", tmpdir);
    CHECK(access(p, F_OK) != 0, "the temporary file was left behind");
    /* /dev/full answers every write with ENOSPC; its folder cannot take the temp file, so use a missing folder */
    snprintf(p, sizeof p, "%s/no/such/folder/x", tmpdir);
    CHECK(mb_write_file_durable(p, "x", 1, &err) != MB_OK, "wrote into a missing folder");
    CHECK(strstr(err.msg, p) && strstr(err.msg, "No such file"), "%s", err.msg);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/mb_test_manifest_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(parse_accepts_the_canonical_form_only);
    RUN(written_manifest_verifies_with_sha256sum_and_catches_damage);
    RUN(durable_write_replaces_whole_files_and_reports_the_cause);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_end();
}
