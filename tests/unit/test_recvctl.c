/*
 * The multishot recv's arming state: every order of want on/off, the end of a recv (by itself or
 * cancelled) and re-arming, including the races of bug 9 (a paused publisher never read again).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <string.h>

#include "ringcast/recvctl.h"

/* A connection as the loop opens it: wants reading, arms, and the recv is outstanding. */
static struct recvctl armed_conn(void)
{
    struct recvctl r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
    recvctl_armed(&r);
    assert_true(r.armed);
    return r;
}

static void test_recvctl_open_arms_once(void **state)
{
    (void)state;
    struct recvctl r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
    /* Asked again before the loop armed it: still to arm (the loop arms once per batch). */
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
    recvctl_armed(&r);
    assert_int_equal(recvctl_want(&r, true), RECVCTL_NONE);
    assert_true(r.want);
    assert_true(r.armed);
    assert_false(r.cancelling);
}

static void test_recvctl_more_changes_nothing(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    for (int i = 0; i < 3; i++)
        assert_int_equal(recvctl_completion(&r, true), RECVCTL_NONE);
    assert_true(r.armed);
    assert_true(r.want);
}

/* The recv ended by itself (ENOBUFS, a full CQ) while still wanted: arm again. */
static void test_recvctl_end_while_wanted_rearms(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_ARM);
    assert_false(r.armed);
    recvctl_armed(&r);
    assert_int_equal(recvctl_completion(&r, true), RECVCTL_NONE);
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_ARM);
}

static void test_recvctl_pause_cancels_once(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    assert_true(r.cancelling);
    /* Asked again while the cancellation is on its way: no second one. */
    assert_int_equal(recvctl_want(&r, false), RECVCTL_NONE);
    /* Data that raced the cancellation. */
    assert_int_equal(recvctl_completion(&r, true), RECVCTL_NONE);
    /* The cancellation lands: the recv is over, nothing to do while paused. */
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_NONE);
    assert_false(r.armed);
    assert_false(r.cancelling);
    /* Paused and not armed: nothing to cancel. */
    assert_int_equal(recvctl_want(&r, false), RECVCTL_NONE);
    /* Resume. */
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
    recvctl_armed(&r);
    assert_int_equal(recvctl_completion(&r, true), RECVCTL_NONE);
}

/* A recv that ended on its own before the pause: nothing to cancel, re-armed on resume. */
static void test_recvctl_pause_after_end(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_ARM);
    /* The loop queued the re-arm but pauses before the end of the batch. */
    assert_int_equal(recvctl_want(&r, false), RECVCTL_NONE);
    assert_false(r.want); /* the loop's re-arm list checks want && !armed: it skips it */
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
}

/* After a cancelled recv is over and re-armed, the next pause cancels again. */
static void test_recvctl_second_pause_cancels_again(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_NONE);
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
    recvctl_armed(&r);
    assert_false(r.cancelling);
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_NONE);
}

/*
 * Bug 9: a paused publisher whose multishot recv ends without IORING_CQE_F_MORE while its
 * cancellation is still in flight (the recv ended by itself, the cancel then finds nothing and no
 * second completion comes) must be re-armed when it resumes.
 */
static void test_recvctl_bug9_end_during_cancel_then_resume(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_NONE);
    /* No other completion will come for that recv: resuming must arm a new one. */
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
    assert_true(r.want);
    assert_false(r.armed);
    recvctl_armed(&r);
    assert_true(r.armed);
    assert_false(r.cancelling);
}

/* Bug 9, the other order: resumed before the cancellation lands; its end must re-arm. */
static void test_recvctl_bug9_resume_before_cancel_lands(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    /* The old recv is still outstanding: arming now would make two. */
    assert_int_equal(recvctl_want(&r, true), RECVCTL_NONE);
    /* Completions with more data before the end do nothing. */
    assert_int_equal(recvctl_completion(&r, true), RECVCTL_NONE);
    /* Its end (ECANCELED) re-arms since reading is wanted again. */
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_ARM);
    recvctl_armed(&r);
    assert_true(r.armed);
    assert_false(r.cancelling);
    /* And a later pause cancels the new recv (the old cancellation is forgotten). */
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
}

/* Bug 9 with a flip-flop: pause, resume, pause again before the cancellation lands. */
static void test_recvctl_bug9_pause_resume_pause(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    assert_int_equal(recvctl_want(&r, true), RECVCTL_NONE);
    assert_int_equal(recvctl_want(&r, false), RECVCTL_NONE); /* one cancellation already */
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_NONE);
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
}

/* Bug 9: the recv ends by itself (ENOBUFS), the loop re-arms, and only then is it paused. */
static void test_recvctl_bug9_rearmed_then_paused(void **state)
{
    (void)state;
    struct recvctl r = armed_conn();
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_NONE);
    assert_int_equal(recvctl_want(&r, true), RECVCTL_ARM);
    recvctl_armed(&r);
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_ARM); /* ENOBUFS */
    recvctl_armed(&r);
    assert_int_equal(recvctl_want(&r, false), RECVCTL_CANCEL);
    assert_int_equal(recvctl_want(&r, true), RECVCTL_NONE);
    assert_int_equal(recvctl_completion(&r, false), RECVCTL_ARM);
}

/*
 * Exhaustive: every sequence of up to 7 events from {want on, want off, completion with more,
 * completion without more, armed} that the loop can produce, checked against a model of the
 * kernel. Invariants: never two recvs outstanding, never a cancellation with nothing to cancel
 * (or two at once), and whenever reading is wanted and no event is pending, a recv is armed.
 */
struct world {
    struct recvctl r;
    int outstanding; /* recvs the kernel holds */
    bool arm_queued; /* the loop's re-arm list holds it */
    bool cancel_sent;
};

enum ev { EV_WANT_ON, EV_WANT_OFF, EV_MORE, EV_END, EV_ARM_BATCH, EV__COUNT };

static void act(struct world *w, enum recvctl_action a)
{
    if (a == RECVCTL_ARM) {
        w->arm_queued = true;
    } else if (a == RECVCTL_CANCEL) {
        assert_int_equal(w->outstanding, 1); /* something to cancel */
        assert_false(w->cancel_sent);        /* one at a time */
        w->cancel_sent = true;
    }
}

/* Returns false when the event cannot happen in this state. */
static bool step(struct world *w, enum ev e)
{
    switch (e) {
    case EV_WANT_ON:
        act(w, recvctl_want(&w->r, true));
        return true;
    case EV_WANT_OFF:
        act(w, recvctl_want(&w->r, false));
        return true;
    case EV_MORE:
        if (!w->outstanding)
            return false;
        act(w, recvctl_completion(&w->r, true));
        return true;
    case EV_END: /* by itself, or the cancellation landing */
        if (!w->outstanding)
            return false;
        w->outstanding--;
        w->cancel_sent = false;
        act(w, recvctl_completion(&w->r, false));
        return true;
    case EV_ARM_BATCH: /* the end of a batch: loop_apply_verdicts' re-arm list */
        if (w->arm_queued && w->r.want && !w->r.armed) {
            assert_int_equal(w->outstanding, 0); /* never two */
            w->outstanding++;
            recvctl_armed(&w->r);
        }
        w->arm_queued = false;
        return true;
    default:
        return false;
    }
}

static void explore(struct world w, int depth)
{
    /* Settled: the batch ended, nothing else pending. Wanted means armed. */
    struct world settled = w;
    step(&settled, EV_ARM_BATCH);
    if (settled.r.want)
        assert_int_equal(settled.outstanding, 1); /* a recv is there (or its end re-arms) */
    assert_true(settled.outstanding <= 1);
    assert_int_equal(settled.r.armed, settled.outstanding == 1);
    if (depth == 0)
        return;
    for (int e = 0; e < EV__COUNT; e++) {
        struct world next = w;
        if (step(&next, (enum ev)e))
            explore(next, depth - 1);
    }
}

static void test_recvctl_every_sequence(void **state)
{
    (void)state;
    struct world w;
    memset(&w, 0, sizeof(w));
    act(&w, recvctl_want(&w.r, true));
    step(&w, EV_ARM_BATCH);
    assert_int_equal(w.outstanding, 1);
    explore(w, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recvctl_open_arms_once),
        cmocka_unit_test(test_recvctl_more_changes_nothing),
        cmocka_unit_test(test_recvctl_end_while_wanted_rearms),
        cmocka_unit_test(test_recvctl_pause_cancels_once),
        cmocka_unit_test(test_recvctl_pause_after_end),
        cmocka_unit_test(test_recvctl_second_pause_cancels_again),
        cmocka_unit_test(test_recvctl_bug9_end_during_cancel_then_resume),
        cmocka_unit_test(test_recvctl_bug9_resume_before_cancel_lands),
        cmocka_unit_test(test_recvctl_bug9_pause_resume_pause),
        cmocka_unit_test(test_recvctl_bug9_rearmed_then_paused),
        cmocka_unit_test(test_recvctl_every_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
