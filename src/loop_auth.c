/*
 * The AUTH gate (--auth-file): a client of a listener without noauth is muted (it gets nothing
 * and pins nothing) until its first frame is a good AUTH; then its role is its token's met with
 * its listener's, and it starts receiving from the head. A failure closes it, after a delay that
 * grows with the failures from its address (authpenalty.h); a pending AUTH past --auth-timeout
 * fails. SIGHUP reads the file again and disconnects the clients whose token went.
 *
 * Tokens never reach a log line, a metric or another client: the AUTH frame is taken here,
 * before ingest (and its -v logging) sees a byte, and the copy assembled for a split frame is
 * wiped when done.
 */
#include "loop_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "ringcast/alloc.h"
#include "say.h"

int auth_setup(struct loop *l, char *err, size_t errlen)
{
    const char *path = l->o->auth_file;
    if (!path[0])
        return 0;
    uint8_t key[16];
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        int e = errno;
        snprintf(err, errlen, "getrandom: %s", strerror(e));
        return -e;
    }
    memcpy(l->tokens.key, key, sizeof(key));
    char why[160];
    int ret = auth_tokens_load(&l->tokens, path, why, sizeof(why));
    if (ret < 0) {
        snprintf(err, errlen, "--auth-file %s: %s", path, why);
        return ret;
    }
    ret = authpenalty_init(&l->penalty, key);
    explicit_bzero(key, sizeof(key));
    if (ret < 0) {
        snprintf(err, errlen, "out of memory for the AUTH failure table");
        return ret;
    }
    l->auth_on = true;
    if (l->tokens.n == 0)
        say_warn("--auth-file %s has no token: every client that must AUTH will be refused", path);
    return 0;
}

void auth_destroy(struct loop *l)
{
    auth_tokens_clear(&l->tokens);
    authpenalty_destroy(&l->penalty);
}

void auth_conn_open(struct loop *l, struct conn *c, const struct listener *ls)
{
    c->token = AUTH_TOKEN_NONE;
    /* One deadline from accept for every gate: PROXY header, TLS handshake, AUTH. */
    c->deadline_ns = l->now_ns + (uint64_t)(l->o->auth_timeout * NSEC);
    if (l->auth_on && ls->auth_required)
        c->auth = CONN_AUTH_PENDING;
}

void gate_release(struct conn *c)
{
    if (!c->gate_buf)
        return;
    explicit_bzero(c->gate_buf, c->gate_len); /* all it holds (gate_view counts what it adds) */
    rc_free(c->gate_buf);
    c->gate_buf = NULL;
    c->gate_len = 0;
}

/* @c's AUTH failed: it is read no more and closed, at once or after its address's delay (the
 * tick closes it then). A timeout closes at once: it has waited long enough already. */
static void fail(struct loop *l, struct conn *c, enum auth_failure why)
{
    c->auth = CONN_AUTH_FAILED;
    c->fail_detail = (uint8_t)why;
    l->stats.auth_failures[why]++;
    gate_release(c);
    loop_stop_reading(l, c);
    struct peercount_key key;
    uint64_t delay = 0;
    if (peercount_key_of(&c->peer, &key))
        delay = authpenalty_fail(&l->penalty, &key, l->now_ns ? l->now_ns : 1);
    if (why == AUTHF_TIMEOUT || delay == 0)
        loop_doom(l, c, DISC_AUTH_FAILED);
    else
        c->deadline_ns = l->now_ns + delay;
}

static void succeed(struct loop *l, struct conn *c, uint32_t token, enum listen_role role)
{
    c->auth = CONN_AUTH_NONE;
    c->token = (uint16_t)token;
    c->role = role & 3u;
    l->stats.auth_successes++;
    loop_gate_passed(l, c); /* the last gate: it receives from the head (unless pub-only) */
    if (say_verbosity() == VERB_VERBOSE) {
        char addr[NETADDR_STRLEN];
        say_event("%s authenticated (role %s).", netaddr_format(&c->peer, addr, sizeof(addr)),
                  opts_role_name(role));
    }
}

/* The AUTH frame @tok[0..@len) arrived: check it. */
static void judge(struct loop *l, struct conn *c, const uint8_t *tok, size_t len)
{
    int32_t idx = auth_tokens_find(&l->tokens, tok, len);
    if (idx < 0) {
        fail(l, c, AUTHF_BAD_TOKEN);
        return;
    }
    int role = auth_role_meet((enum listen_role)l->tokens.v[idx].role, (enum listen_role)c->role);
    if (role < 0)
        fail(l, c, AUTHF_ROLE);
    else
        succeed(l, c, (uint32_t)idx, (enum listen_role)role);
}

/*
 * What a gate (the PROXY header, the AUTH frame) looks at: most arrive whole in one receive buffer
 * and are parsed there; a split one is assembled in a small buffer of the client's own (at most
 * @cap bytes, for at most --auth-timeout), wiped when done (gate_release).
 */
struct gate_view gate_view(struct conn *c, const uint8_t *p, size_t len, size_t cap)
{
    struct gate_view v = {.bytes = p, .have = len, .before = c->gate_len};
    if (v.before) {
        size_t took = len < cap - v.before ? len : cap - v.before;
        memcpy(c->gate_buf + v.before, p, took);
        v.bytes = c->gate_buf;
        v.have = v.before + took;
        c->gate_len = (uint16_t)v.have;
    }
    return v;
}

void gate_hold(struct loop *l, struct conn *c, const struct gate_view *v, size_t cap)
{
    if (!v->before) { /* first time: the bytes are still the receive buffer's */
        c->gate_buf = rc_malloc(cap);
        if (!c->gate_buf) {
            loop_doom(l, c, DISC_NO_MEMORY);
            return;
        }
        memcpy(c->gate_buf, v->bytes, v->have);
    }
    c->gate_len = (uint16_t)v->have;
}

size_t auth_gate(struct loop *l, struct conn *c, const uint8_t *p, size_t len)
{
    if (c->auth != CONN_AUTH_PENDING)
        return len; /* failed: waiting for its close, nothing it sends is looked at */
    struct gate_view v = gate_view(c, p, len, AUTH_FRAME_MAX);
    size_t before = v.before, frame_len = 0, tok_len = 0;
    const uint8_t *tok = NULL;
    enum auth_frame r =
        auth_frame_parse(l->o->framing, v.bytes, v.have, &frame_len, &tok, &tok_len);
    if (r == AUTH_FRAME_NEED_MORE && v.have >= AUTH_FRAME_MAX)
        r = AUTH_FRAME_MALFORMED; /* cannot happen (the parser decides by then): stay bounded */
    switch (r) {
    case AUTH_FRAME_NEED_MORE:
        gate_hold(l, c, &v, AUTH_FRAME_MAX);
        return len;
    case AUTH_FRAME_NOT_AUTH:
        fail(l, c, AUTHF_MISSING);
        return len;
    case AUTH_FRAME_MALFORMED:
        fail(l, c, AUTHF_MALFORMED);
        return len;
    case AUTH_FRAME_OK:
        break;
    }
    judge(l, c, tok, tok_len);
    gate_release(c);
    return frame_len - before; /* what follows the frame in @p is ordinary data */
}

void gate_tick(struct loop *l, struct conn *c)
{
    if (l->now_ns < c->deadline_ns)
        return;
    if (c->proxy_pending)
        accept_proxy_timeout(l, c);
    else if (c->tls && !c->tls->established)
        tls_timeout(l, c);
    else if (c->auth == CONN_AUTH_PENDING)
        fail(l, c, AUTHF_TIMEOUT);
    else
        loop_doom(l, c, DISC_AUTH_FAILED); /* its delay is over */
}

void auth_reload(struct loop *l)
{
    const char *path = l->o->auth_file;
    struct auth_tokens fresh = {0};
    memcpy(fresh.key, l->tokens.key, sizeof(fresh.key)); /* remap compares under one key */
    char why[160];
    int32_t *map = rc_calloc(l->tokens.n ? l->tokens.n : 1, sizeof(*map));
    int ret = map ? auth_tokens_load(&fresh, path, why, sizeof(why)) : -ENOMEM;
    if (ret < 0) {
        l->stats.auth_reload_failures++;
        say_error("SIGHUP: auth file not reloaded: %s: %s; keeping the previous one", path,
                  map ? why : "out of memory");
        rc_free(map);
        explicit_bzero(fresh.key, sizeof(fresh.key));
        return;
    }
    auth_tokens_remap(&l->tokens, &fresh, map);
    uint32_t revoked = 0;
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (!conn_live(c) || c->token == AUTH_TOKEN_NONE)
            continue;
        int32_t now = map[c->token];
        if (now < 0) {
            loop_doom(l, c, DISC_TOKEN_REVOKED);
            c->token = AUTH_TOKEN_NONE;
            revoked++;
        } else {
            c->token = (uint16_t)now;
        }
    }
    rc_free(map);
    auth_tokens_clear(&l->tokens);
    l->tokens = fresh;
    l->stats.auth_reloads++;
    say_event("SIGHUP: auth file reloaded (%u tokens); %u client(s) revoked", l->tokens.n, revoked);
}
