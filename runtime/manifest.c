/* manifest.c: the sha256 manifest of a checkpoint folder (see manifest.h). */
#include "manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"

static const char HEADER[] = "# moonbert checkpoint manifest v1";

void mb_manifest_free(mb_manifest *m) {
    if (!m) return;
    for (int64_t i = 0; i < m->n; i++) free(m->entries[i].path);
    free(m->entries);
    m->entries = NULL;
    m->n = 0;
}

int mb_manifest_path_ok(const char *path, size_t len) {
    if (len == 0 || len > MB_MANIFEST_MAX_PATH || path[0] == '/' || path[len - 1] == '/') return 0;
    size_t part = 0; /* start of the current component */
    for (size_t i = 0; i <= len; i++) {
        if (i < len) {
            unsigned char c = (unsigned char)path[i];
            if (c < 0x20 || c == 0x7f || c == '\\') return 0;
            if (c != '/') continue;
        }
        size_t n = i - part;
        if (n == 0) return 0;
        if (n == 1 && path[part] == '.') return 0;
        if (n == 2 && path[part] == '.' && path[part + 1] == '.') return 0;
        part = i + 1;
    }
    if (len == sizeof MB_MANIFEST_NAME - 1 && memcmp(path, MB_MANIFEST_NAME, len) == 0) return 0;
    return 1;
}

static int is_hex_lower(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

mb_status mb_manifest_parse(mb_manifest *m, const char *text, size_t len, const char *name, mb_error *err) {
    m->n = 0;
    m->entries = NULL;
    if (!name) name = MB_MANIFEST_NAME;
    size_t pos = 0;
    int64_t line = 0, declared = -1;
    mb_status st = MB_OK;
    while (pos < len) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        if (!nl) {
            st = mb_fail(err, MB_ERR_FORMAT, "%s: line %lld has no end (the file is cut short)", name, (long long)line);
            goto fail;
        }
        size_t n = (size_t)(nl - s);
        pos += n + 1;
        if (declared >= 0) {
            st = mb_fail(err, MB_ERR_FORMAT, "%s: line %lld follows the end line", name, (long long)line);
            goto fail;
        }
        if (line == 1) {
            if (n != sizeof HEADER - 1 || memcmp(s, HEADER, n) != 0) {
                st = mb_fail(err, MB_ERR_FORMAT, "%s: line 1 is not \"%s\"", name, HEADER);
                goto fail;
            }
            continue;
        }
        if (n > 0 && s[0] == '#') {
            /* "# end N files": N must be the number of entries read */
            char buf[64];
            long long k;
            char tail[8];
            if (n >= sizeof buf) goto bad_end;
            memcpy(buf, s, n);
            buf[n] = '\0';
            if (sscanf(buf, "# end %lld %7s", &k, tail) != 2 || strcmp(tail, "files") != 0) goto bad_end;
            /* byte for byte the canonical line: sscanf and strcmp stop at a NUL, which
               let "# end 2 files\0\r" through (found by fuzz_manifest) */
            char again[64];
            int alen = snprintf(again, sizeof again, "# end %lld files", k);
            if ((size_t)alen != n || memcmp(again, s, n) != 0) goto bad_end;
            if (k != m->n) {
                st = mb_fail(err, MB_ERR_FORMAT, "%s: the end line counts %lld files, the manifest lists %lld", name, k,
                             (long long)m->n);
                goto fail;
            }
            declared = k;
            continue;
        bad_end:
            st = mb_fail(err, MB_ERR_FORMAT, "%s: line %lld: expected \"# end N files\"", name, (long long)line);
            goto fail;
        }
        if (n < MB_SHA256_HEX_LEN + 3 || s[MB_SHA256_HEX_LEN] != ' ' || s[MB_SHA256_HEX_LEN + 1] != ' ' ||
            !is_hex_lower(s, MB_SHA256_HEX_LEN)) {
            st = mb_fail(err, MB_ERR_FORMAT, "%s: line %lld: expected \"<sha256 hex>  <path>\"", name, (long long)line);
            goto fail;
        }
        const char *path = s + MB_SHA256_HEX_LEN + 2;
        size_t plen = n - MB_SHA256_HEX_LEN - 2;
        if (!mb_manifest_path_ok(path, plen)) {
            st = mb_fail(err, MB_ERR_FORMAT, "%s: line %lld: the path is not a plain relative path", name, (long long)line);
            goto fail;
        }
        if (m->n >= MB_MANIFEST_MAX_FILES) {
            st = mb_fail(err, MB_ERR_FORMAT, "%s: more than %d files", name, MB_MANIFEST_MAX_FILES);
            goto fail;
        }
        for (int64_t i = 0; i < m->n; i++) {
            if (strlen(m->entries[i].path) == plen && memcmp(m->entries[i].path, path, plen) == 0) {
                st = mb_fail(err, MB_ERR_FORMAT, "%s: line %lld lists %s a second time", name, (long long)line,
                             m->entries[i].path);
                goto fail;
            }
        }
        mb_manifest_entry *e = realloc(m->entries, (size_t)(m->n + 1) * sizeof *e);
        if (!e) {
            st = mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", name);
            goto fail;
        }
        m->entries = e;
        char *p = malloc(plen + 1);
        if (!p) {
            st = mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", name);
            goto fail;
        }
        memcpy(p, path, plen);
        p[plen] = '\0';
        e[m->n].path = p;
        memcpy(e[m->n].hex, s, MB_SHA256_HEX_LEN);
        e[m->n].hex[MB_SHA256_HEX_LEN] = '\0';
        m->n++;
    }
    if (line == 0) {
        st = mb_fail(err, MB_ERR_FORMAT, "%s: empty", name);
        goto fail;
    }
    if (declared < 0) {
        st = mb_fail(err, MB_ERR_FORMAT, "%s: no end line (the file is cut short)", name);
        goto fail;
    }
    if (m->n == 0) {
        st = mb_fail(err, MB_ERR_FORMAT, "%s: lists no files", name);
        goto fail;
    }
    return MB_OK;
fail:
    mb_manifest_free(m);
    return st;
}

char *mb_manifest_format(const mb_manifest *m, mb_error *err) {
    size_t cap = sizeof HEADER + 64;
    for (int64_t i = 0; i < m->n; i++) {
        if (!m->entries[i].path || !mb_manifest_path_ok(m->entries[i].path, strlen(m->entries[i].path)) ||
            strlen(m->entries[i].hex) != MB_SHA256_HEX_LEN || !is_hex_lower(m->entries[i].hex, MB_SHA256_HEX_LEN)) {
            mb_fail(err, MB_ERR_ARG, "manifest: entry %lld is not a valid path and digest", (long long)i + 1);
            return NULL;
        }
        cap += MB_SHA256_HEX_LEN + 3 + strlen(m->entries[i].path);
    }
    char *out = malloc(cap);
    if (!out) {
        mb_fail(err, MB_ERR_NOMEM, "manifest: out of memory");
        return NULL;
    }
    size_t pos = (size_t)snprintf(out, cap, "%s\n", HEADER);
    for (int64_t i = 0; i < m->n; i++)
        pos += (size_t)snprintf(out + pos, cap - pos, "%s  %s\n", m->entries[i].hex, m->entries[i].path);
    snprintf(out + pos, cap - pos, "# end %lld files\n", (long long)m->n);
    return out;
}

mb_status mb_manifest_write(const char *dir, const char *const *files, int n, mb_error *err) {
    mb_manifest m = {0, NULL};
    mb_status st = MB_OK;
    if (n <= 0 || n > MB_MANIFEST_MAX_FILES) return mb_fail(err, MB_ERR_ARG, "manifest: %d files (1 to %d)", n, MB_MANIFEST_MAX_FILES);
    m.entries = calloc((size_t)n, sizeof *m.entries);
    if (!m.entries) return mb_fail(err, MB_ERR_NOMEM, "manifest: out of memory");
    for (int i = 0; i < n; i++) {
        if (!mb_manifest_path_ok(files[i], strlen(files[i]))) {
            st = mb_fail(err, MB_ERR_ARG, "manifest: '%s' is not a plain relative path", files[i]);
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(files[i], files[j]) == 0) {
                st = mb_fail(err, MB_ERR_ARG, "manifest: '%s' is listed twice", files[i]);
                goto done;
            }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if ((st = mb_sha256_file(path, m.entries[i].hex, err))) goto done;
        if (!(m.entries[i].path = strdup(files[i]))) {
            st = mb_fail(err, MB_ERR_NOMEM, "manifest: out of memory");
            goto done;
        }
        m.n = i + 1;
    }
    char *text = mb_manifest_format(&m, err);
    if (!text) {
        st = err ? err->code : MB_ERR_ARG;
        goto done;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MB_MANIFEST_NAME);
    st = mb_write_file_durable(path, text, strlen(text), err);
    free(text);
done:
    if (m.n < n) m.n = n; /* free the entries filled so far (calloc'd: the rest are NULL) */
    mb_manifest_free(&m);
    return st;
}

mb_status mb_manifest_verify(const char *dir, mb_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MB_MANIFEST_NAME);
    FILE *f = fopen(path, "rb");
    if (!f) return mb_fail(err, MB_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    size_t got;
    while (text && (got = fread(text + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            if (cap >= (size_t)MB_MANIFEST_MAX_FILES * (MB_MANIFEST_MAX_PATH + 80)) break;
            char *t = realloc(text, cap * 2);
            if (!t) {
                free(text);
                text = NULL;
                break;
            }
            text = t;
            cap *= 2;
        }
    }
    int rerr = ferror(f);
    fclose(f);
    if (!text) return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", path);
    if (rerr) {
        free(text);
        return mb_fail(err, MB_ERR_IO, "%s: read error", path);
    }
    mb_manifest m;
    mb_status st = mb_manifest_parse(&m, text, len, path, err);
    free(text);
    if (st) return st;
    for (int64_t i = 0; i < m.n && !st; i++) {
        char fp[4096], hex[MB_SHA256_HEX_LEN + 1];
        snprintf(fp, sizeof fp, "%s/%s", dir, m.entries[i].path);
        struct stat sb;
        if (lstat(fp, &sb) != 0 || !S_ISREG(sb.st_mode))
            st = mb_fail(err, MB_ERR_FORMAT, "%s: missing (listed in %s)", fp, MB_MANIFEST_NAME);
        else if (mb_sha256_file(fp, hex, err))
            st = err ? err->code : MB_ERR_IO;
        else if (strcmp(hex, m.entries[i].hex) != 0)
            st = mb_fail(err, MB_ERR_FORMAT, "%s: sha256 %.12s... differs from the manifest's %.12s...", fp, hex,
                         m.entries[i].hex);
    }
    mb_manifest_free(&m);
    return st;
}
