/* Tokens and the AUTH frame (see auth.h). */
#include "ringcast/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ringcast/alloc.h"
#include "ringcast/siphash.h"

static bool token_byte(uint8_t b)
{
    return b > 0x20 && b < 0x7f;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* ===== the file ===== */

/* One line, without its '\n': a role, blanks, a token; blanks around them. Returns 0 (a token:
 * *@role, *@tok, *@tok_len set), 1 (nothing on it) or -1 (@err set). */
static int parse_line(const char *s, size_t len, unsigned line, int *role, const char **tok,
                      size_t *tok_len, char *err, size_t errlen)
{
    static const char *const roles[] = {
        [ROLE_BOTH] = "both", [ROLE_PUB] = "pub", [ROLE_SUB] = "sub"};
    if (len && s[len - 1] == '\r')
        len--;
    size_t i = 0;
    while (i < len && blank(s[i]))
        i++;
    while (len > i && blank(s[len - 1]))
        len--;
    if (i == len || s[i] == '#')
        return 1;
    size_t word = i;
    while (i < len && !blank(s[i]))
        i++;
    *role = -1;
    for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++)
        if (i - word == strlen(roles[r]) && !memcmp(s + word, roles[r], i - word))
            *role = (int)r;
    /* Never quote the word: a line written TOKEN ROLE would print the token. */
    if (*role < 0) {
        snprintf(err, errlen, "line %u: the first word must be the role: both, pub or sub", line);
        return -1;
    }
    while (i < len && blank(s[i]))
        i++;
    size_t start = i;
    while (i < len && !blank(s[i]))
        i++;
    if (start == i) {
        snprintf(err, errlen, "line %u: a role without a token", line);
        return -1;
    }
    if (i != len) {
        snprintf(err, errlen, "line %u: expected ROLE TOKEN, found more words", line);
        return -1;
    }
    if (i - start > AUTH_TOKEN_MAX) {
        snprintf(err, errlen, "line %u: the token is longer than %u bytes", line, AUTH_TOKEN_MAX);
        return -1;
    }
    for (size_t k = start; k < i; k++) {
        if (!token_byte((uint8_t)s[k])) {
            snprintf(err, errlen, "line %u: the token has a byte outside printable ASCII", line);
            return -1;
        }
    }
    *tok = s + start;
    *tok_len = i - start;
    return 0;
}

int auth_tokens_parse(struct auth_tokens *t, const char *text, size_t len, char *err, size_t errlen)
{
    /* Room for a token per line, up to the limit (one more is how the limit is noticed). */
    size_t room = 1;
    for (const char *q = text;
         room <= AUTH_TOKENS_MAX && (q = memchr(q, '\n', len - (size_t)(q - text))); q++)
        room++;
    if (room > AUTH_TOKENS_MAX)
        room = AUTH_TOKENS_MAX;
    struct auth_token *v = rc_calloc(room, sizeof(*v));
    unsigned *lines = rc_calloc(room, sizeof(*lines));
    int ret = v && lines ? 0 : -ENOMEM;
    if (ret)
        snprintf(err, errlen, "out of memory");
    uint32_t n = 0;
    unsigned line = 0;
    for (size_t at = 0; ret == 0 && at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        int role;
        const char *tok;
        size_t tok_len;
        line++;
        int r = parse_line(text + at, end - at, line, &role, &tok, &tok_len, err, errlen);
        at = end + 1;
        if (r < 0) {
            ret = -EINVAL;
        } else if (r == 0 && n == room) { /* room is short of the limit only if lines are */
            snprintf(err, errlen, "line %u: more than %u tokens", line, AUTH_TOKENS_MAX);
            ret = -EINVAL;
        } else if (r == 0) {
            struct auth_token *e = &v[n];
            e->len = (uint16_t)tok_len;
            e->role = (uint8_t)role;
            memcpy(e->bytes, tok, tok_len);
            e->mac = siphash24(t->key, e->bytes, e->len);
            for (uint32_t k = 0; k < n && ret == 0; k++) {
                if (v[k].len == e->len && !memcmp(v[k].bytes, e->bytes, e->len)) {
                    snprintf(err, errlen, "line %u: the token of line %u again", line, lines[k]);
                    ret = -EINVAL;
                }
            }
            lines[n++] = line;
        }
    }
    rc_free(lines);
    if (ret) {
        if (v)
            explicit_bzero(v, room * sizeof(*v));
        rc_free(v);
        return ret;
    }
    /* Keep what was used (the bytes move, so wipe the copy left behind). */
    struct auth_token *fit = rc_calloc(n ? n : 1, sizeof(*fit));
    if (fit)
        memcpy(fit, v, n * sizeof(*fit));
    explicit_bzero(v, room * sizeof(*v));
    rc_free(v);
    if (!fit) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    auth_tokens_clear(t);
    t->v = fit;
    t->n = n;
    return 0;
}

/*
 * Whether @path is a credential systemd handed to this service (LoadCredential=): a file in
 * $CREDENTIALS_DIRECTORY with an access ACL. systemd writes it 0400, root's, and grants the
 * service's user read access by an ACL entry, whose mask the group bits show (0440): those bits
 * then open it to that user only, in a directory only the service can reach.
 */
static bool systemd_credential(const char *path)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    char real_dir[PATH_MAX], real_path[PATH_MAX];
    if (!dir || !*dir || !realpath(dir, real_dir) || !realpath(path, real_path))
        return false;
    size_t n = strlen(real_dir);
    if (strncmp(real_path, real_dir, n) != 0 || real_path[n] != '/')
        return false;
    return getxattr(real_path, "system.posix_acl_access", NULL, 0) > 0;
}

int auth_tokens_load(struct auth_tokens *t, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s", strerror(e));
        return -e;
    }
    struct stat st;
    int ret = 0;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        snprintf(err, errlen, "%s", strerror(-ret));
    } else if (!S_ISREG(st.st_mode)) {
        ret = -EINVAL;
        snprintf(err, errlen, "not a regular file");
    } else if ((st.st_mode & S_IRWXO) || ((st.st_mode & S_IRWXG) && !systemd_credential(path))) {
        ret = -EPERM;
        snprintf(err, errlen, "readable or writable by group or others (mode %04o); chmod 600 it",
                 (unsigned)(st.st_mode & 07777));
    } else if (st.st_size > (off_t)AUTH_FILE_MAX) {
        ret = -EFBIG;
        snprintf(err, errlen, "larger than %u bytes", AUTH_FILE_MAX);
    }
    char *text = ret ? NULL : rc_malloc((size_t)st.st_size + 1);
    if (!ret && !text) {
        ret = -ENOMEM;
        snprintf(err, errlen, "out of memory");
    }
    size_t len = 0;
    while (!ret) {
        /* Read to the end, not to st_size: the file may be being rewritten. */
        ssize_t r = read(fd, text + len, (size_t)st.st_size + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = -errno;
            snprintf(err, errlen, "%s", strerror(-ret));
        } else if (r == 0) {
            break;
        } else if ((len += (size_t)r) > (size_t)st.st_size) {
            ret = -EAGAIN;
            snprintf(err, errlen, "it grew while being read; try again");
        }
    }
    close(fd);
    if (!ret)
        ret = auth_tokens_parse(t, text, len, err, errlen);
    if (text) {
        explicit_bzero(text, (size_t)st.st_size + 1);
        rc_free(text);
    }
    return ret;
}

void auth_tokens_clear(struct auth_tokens *t)
{
    if (t->v)
        explicit_bzero(t->v, t->n * sizeof(*t->v));
    rc_free(t->v);
    t->v = NULL;
    t->n = 0;
}

/* 1 when @a == @b, else 0, without a branch on their bits. */
static uint32_t eq64(uint64_t a, uint64_t b)
{
    uint64_t d = a ^ b;
    return (uint32_t)(((d | (0 - d)) >> 63) ^ 1);
}

int32_t auth_tokens_find(const struct auth_tokens *t, const uint8_t *tok, size_t len)
{
    if (!t->n || len == 0 || len > AUTH_TOKEN_MAX)
        return -1;
    uint64_t mac = siphash24(t->key, tok, len);
    /* Every entry, every time: the index is picked by masks, not by an early exit. */
    uint32_t found = 0, idx = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        uint32_t m = 0 - (eq64(t->v[i].mac, mac) & (found ^ 1));
        idx = (idx & ~m) | (i & m);
        found |= m & 1;
    }
    if (!found)
        return -1;
    /* Equal hashes of different tokens (2^-64): check the bytes, in constant time too. */
    const struct auth_token *e = &t->v[idx];
    uint8_t diff = e->len != len;
    for (size_t i = 0; i < e->len && i < len; i++)
        diff |= e->bytes[i] ^ tok[i];
    return diff ? -1 : (int32_t)idx;
}

void auth_tokens_remap(const struct auth_tokens *old, const struct auth_tokens *new, int32_t *map)
{
    for (uint32_t i = 0; i < old->n; i++) {
        const struct auth_token *o = &old->v[i];
        int32_t j = auth_tokens_find(new, o->bytes, o->len);
        map[i] = j >= 0 && new->v[j].role == o->role ? j : -1;
    }
}

int auth_role_meet(enum listen_role token, enum listen_role listener)
{
    if (token == ROLE_BOTH)
        return (int)listener;
    if (listener == ROLE_BOTH || listener == token)
        return (int)token;
    return -1;
}

/* ===== the frame ===== */

static const char auth_word[5] = {'A', 'U', 'T', 'H', ' '};

/* Whether the first @n bytes at @p can start "AUTH ". */
static bool auth_prefix(const uint8_t *p, size_t n)
{
    return !memcmp(p, auth_word, n < sizeof(auth_word) ? n : sizeof(auth_word));
}

static enum auth_frame check_token(const uint8_t *tok, size_t len)
{
    if (len == 0 || len > AUTH_TOKEN_MAX)
        return AUTH_FRAME_MALFORMED;
    for (size_t i = 0; i < len; i++)
        if (!token_byte(tok[i]))
            return AUTH_FRAME_MALFORMED;
    return AUTH_FRAME_OK;
}

static enum auth_frame parse_line_frame(const uint8_t *p, size_t len, size_t *frame_len,
                                        const uint8_t **tok, size_t *tok_len)
{
    const size_t longest = sizeof(auth_word) + AUTH_TOKEN_MAX + 2; /* "\r\n" */
    size_t look = len < longest ? len : longest;
    const uint8_t *nl = memchr(p, '\n', look);
    if (!auth_prefix(p, nl ? (size_t)(nl - p) + 1 : look))
        return AUTH_FRAME_NOT_AUTH; /* "AUTH\n" too: its '\n' is not the blank */
    if (!nl)
        return len >= longest ? AUTH_FRAME_MALFORMED : AUTH_FRAME_NEED_MORE;
    size_t end = (size_t)(nl - p);
    *frame_len = end + 1;
    if (end > sizeof(auth_word) && p[end - 1] == '\r')
        end--;
    *tok = p + sizeof(auth_word);
    *tok_len = end - sizeof(auth_word);
    return check_token(*tok, *tok_len);
}

static enum auth_frame parse_len32_frame(const uint8_t *p, size_t len, size_t *frame_len,
                                         const uint8_t **tok, size_t *tok_len)
{
    if (len < 4)
        return AUTH_FRAME_NEED_MORE;
    uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    size_t have = len - 4 < n ? len - 4 : n;
    if (!auth_prefix(p + 4, have) || n < sizeof(auth_word))
        return AUTH_FRAME_NOT_AUTH;
    if (have < sizeof(auth_word))
        return AUTH_FRAME_NEED_MORE;
    if (n == sizeof(auth_word) || n > sizeof(auth_word) + AUTH_TOKEN_MAX)
        return AUTH_FRAME_MALFORMED;
    if (have < n)
        return AUTH_FRAME_NEED_MORE;
    *frame_len = 4 + (size_t)n;
    *tok = p + 4 + sizeof(auth_word);
    *tok_len = n - sizeof(auth_word);
    return check_token(*tok, *tok_len);
}

enum auth_frame auth_frame_parse(enum framing framing, const uint8_t *p, size_t len,
                                 size_t *frame_len, const uint8_t **tok, size_t *tok_len)
{
    if (len == 0)
        return AUTH_FRAME_NEED_MORE;
    return framing == FRAMING_LEN32 ? parse_len32_frame(p, len, frame_len, tok, tok_len)
                                    : parse_line_frame(p, len, frame_len, tok, tok_len);
}

const char *auth_failure_text(enum auth_failure f)
{
    switch (f) {
    case AUTHF_MISSING:
        return "no AUTH";
    case AUTHF_MALFORMED:
        return "malformed AUTH";
    case AUTHF_BAD_TOKEN:
        return "bad token";
    case AUTHF_ROLE:
        return "role not allowed here";
    case AUTHF_TIMEOUT:
        return "timeout";
    case AUTHF__COUNT:
        break;
    }
    return "unknown";
}
