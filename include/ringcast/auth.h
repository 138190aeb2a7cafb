/*
 * Tokens (--auth-file) and the AUTH frame. Pure apart from auth_tokens_load, which reads the
 * file. What the loop does with a verdict (closing, slowing repeated failures, revoking on
 * SIGHUP) is src/loop_auth.c's.
 *
 * The file has lines `ROLE TOKEN` (role both|pub|sub, token 1..AUTH_TOKEN_MAX bytes of printable
 * ASCII without spaces), `#` comments and blank lines. A client's first frame is `AUTH TOKEN`:
 * the line `AUTH TOKEN\n` (or `\r\n`), or a len32 frame whose payload is exactly `AUTH TOKEN`.
 *
 * No message, error or log line made here contains a token. Lookups take the same time whichever
 * token matches, or none: each stored token is compared by its keyed hash (SipHash under a random
 * key, so equal hashes say nothing about shared prefixes), every entry every time.
 */
#ifndef RINGCAST_AUTH_H
#define RINGCAST_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/opts.h"
#include "ringcast/stats.h"

#define AUTH_TOKEN_MAX 256u
#define AUTH_TOKENS_MAX 4096u
/* The longest AUTH frame: "AUTH " + token + "\r\n" (line) or 4-byte header + "AUTH " + token. */
#define AUTH_FRAME_MAX (4u + 5u + AUTH_TOKEN_MAX + 2u)
/* The biggest file read: every token at its longest, with room for comments. */
#define AUTH_FILE_MAX (2u << 20)
#define AUTH_TOKEN_NONE UINT16_MAX

struct auth_token {
    uint64_t mac; /* SipHash of the token under the set's key */
    uint16_t len;
    uint8_t role; /* enum listen_role */
    uint8_t bytes[AUTH_TOKEN_MAX];
};

struct auth_tokens {
    struct auth_token *v;
    uint32_t n;
    uint8_t key[16]; /* random, drawn by the caller */
};

/**
 * Parse the file's text @text[0..@len) into @t (whose key the caller set). 0, or -EINVAL with
 * @err set to "line N: what is wrong" (never the token), or -ENOMEM. @t is untouched on error.
 */
int auth_tokens_parse(struct auth_tokens *t, const char *text, size_t len, char *err,
                      size_t errlen);

/**
 * Read @path into @t: a regular file of at most AUTH_FILE_MAX bytes with no permission bits for
 * group or others. 0, or -errno with @err set (a message without the path: the caller names
 * it). Every copy of the file's bytes is wiped before returning. @t is untouched on error.
 */
int auth_tokens_load(struct auth_tokens *t, const char *path, char *err, size_t errlen);

/** Wipe and free the tokens (the key stays); safe on an empty set. */
void auth_tokens_clear(struct auth_tokens *t);

/** The index of the token equal to @tok[0..@len), or -1; see the top for the timing. */
int32_t auth_tokens_find(const struct auth_tokens *t, const uint8_t *tok, size_t len);

/**
 * After a reload: @map[i] (for each of @old's tokens) becomes the index in @new of the same token
 * with the same role, or -1 when it is gone or its role changed (its clients are revoked). The
 * two sets must share their key.
 */
void auth_tokens_remap(const struct auth_tokens *old, const struct auth_tokens *new, int32_t *map);

/** The role a client gets: @token's intersected with @listener's; -1 when they do not meet. */
int auth_role_meet(enum listen_role token, enum listen_role listener);

enum auth_frame {
    AUTH_FRAME_NEED_MORE, /* could still become an AUTH frame: send more */
    AUTH_FRAME_OK,        /* an AUTH frame: *frame_len bytes, the token at *tok */
    AUTH_FRAME_NOT_AUTH,  /* the first frame is something else */
    AUTH_FRAME_MALFORMED, /* an AUTH frame that is too long, has no token or a bad byte in it */
};

/**
 * Look at the start of what a client sent, @p[0..@len) (at most AUTH_FRAME_MAX bytes are ever
 * needed to decide). On AUTH_FRAME_OK, *@frame_len is the frame's length on the wire and
 * *@tok / *@tok_len the token inside @p.
 */
enum auth_frame auth_frame_parse(enum framing framing, const uint8_t *p, size_t len,
                                 size_t *frame_len, const uint8_t **tok, size_t *tok_len);

/** What the log says after "auth failed: " for @f ("bad token", ...). */
const char *auth_failure_text(enum auth_failure f);

#endif
