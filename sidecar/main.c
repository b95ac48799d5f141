/* SPDX-License-Identifier: MIT */
/* keel entry point: command line, start-up, the control loop, graceful shutdown. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "keel/config.h"
#include "keel/err.h"
#include "keel/log.h"
#include "keel/snap.h"
#include "admin.h"
#include "discovery.h"
#include "tls.h"
#include "worker.h"

#define KEEL_VERSION "0.1.0"

static struct keel_runtime rt;
static struct keel_discovery disc;
static ev_timer drain_timer;

static void usage(FILE *f)
{
    fprintf(f, "usage: keel -c FILE      run with a configuration file\n"
               "       keel --check FILE validate a configuration file and exit\n"
               "       keel --version\n");
}

static int print_errors(struct keel_cfg_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
    keel_config_errors_free(errs);
    return 1;
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    KEEL_WARN("drain timeout reached: closing the remaining connections");
    atomic_store(&rt.draining, 2);
    for (uint32_t i = 0; i < rt.n_workers; i++)
        keel_worker_drain(&rt.workers[i]);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    if (atomic_load(&rt.draining)) {
        KEEL_WARN("second signal: stopping now");
        on_drain_timeout(loop, &drain_timer, 0);
        return;
    }
    KEEL_INFO("received %s: draining (up to %.1fs)", strsignal(s->signum),
              rt.cfg->drain_timeout_ms / 1000.0);
    atomic_store(&rt.draining, 1);
    for (uint32_t i = 0; i < rt.n_workers; i++)
        keel_worker_drain(&rt.workers[i]);
    ev_timer_init(&drain_timer, on_drain_timeout, rt.cfg->drain_timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, &drain_timer);
}

/* SIGHUP: new certificate files for the TLS listeners (a failure keeps the old ones). */
static void on_reload(struct ev_loop *loop, ev_signal *s, int revents)
{
    if (keel_tls_listener_count() == 0) {
        KEEL_INFO("received SIGHUP: no TLS listener, nothing to reload");
        return;
    }
    KEEL_INFO("received SIGHUP: reloading TLS certificates");
    keel_tls_reload();
}

/* A new snapshot from discovery: every worker adopts it between two events. */
static void on_publish(struct keel_snap *s, void *arg)
{
    rt.snap = s;
    for (uint32_t i = 0; i < rt.n_workers; i++)
        keel_worker_offer(&rt.workers[i], s);
}

static void on_control_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    if (atomic_load(&rt.workers_done) >= rt.n_workers)
        ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", required_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cfg_path = NULL;
    int check_only = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'k':
            cfg_path = optarg;
            check_only = 1;
            break;
        case 'V':
            printf("keel %s\n", KEEL_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!cfg_path || optind != argc) {
        usage(stderr);
        return 2;
    }

    struct keel_cfg_errors errs = {0};
    struct keel_cfg *cfg = NULL;
    if (keel_config_load_file(cfg_path, &cfg, &errs) != 0)
        return print_errors(&errs);
    keel_config_errors_free(&errs);
    /* Certificates and keys are loaded (and checked) before anything starts. */
    if (keel_tls_init(cfg) != 0) {
        fprintf(stderr, "%s: TLS set-up failed (see above)\n", cfg_path);
        keel_config_free(cfg);
        return 1;
    }
    if (check_only) {
        printf("%s: ok\n", cfg_path);
        keel_tls_shutdown();
        keel_config_free(cfg);
        return 0;
    }
    keel_log_level = cfg->log_level;

    /* Every client and upstream connection is a descriptor: use all the hard limit allows. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            KEEL_WARN("cannot raise the open file limit: %s", strerror(errno));
    }
    signal(SIGPIPE, SIG_IGN);
    /* Only the control thread handles signals: block them before workers are created. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, &old);

    rt.cfg = cfg;
    rt.n_workers = cfg->workers ? cfg->workers : (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (rt.n_workers < 1)
        rt.n_workers = 1;
    rt.lstats = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*rt.lstats));
    rt.cstats = calloc(cfg->n_clusters ? cfg->n_clusters : 1, sizeof(*rt.cstats));
    rt.workers = calloc(rt.n_workers, sizeof(*rt.workers));
    if (!rt.lstats || !rt.cstats || !rt.workers) {
        KEEL_ERROR("out of memory at start-up");
        return 1;
    }
    rt.control_loop = ev_default_loop(EVFLAG_AUTO);
    rt.disc = &disc;
    /* The first snapshot goes into the (not yet started) workers' mailboxes. */
    if (keel_discovery_init(&disc, rt.control_loop, cfg, rt.cstats, on_publish, NULL) != 0) {
        KEEL_ERROR("cannot build the routing snapshot");
        return 1;
    }
    ev_async_init(&rt.control_wake, on_control_wake);
    ev_async_start(rt.control_loop, &rt.control_wake);

    for (uint32_t i = 0; i < rt.n_workers; i++) {
        struct keel_worker *w = &rt.workers[i];
        w->id = i;
        w->rt = &rt;
        w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
        if (!w->loop || keel_worker_bind(w) != 0)
            return 1;
    }
    if (cfg->admin_enabled && keel_admin_start(&rt) != 0)
        return 1;
    for (uint32_t i = 0; i < rt.n_workers; i++) {
        if (keel_worker_start(&rt.workers[i]) != 0) {
            KEEL_ERROR("cannot start worker thread %u", i);
            return 1;
        }
    }
    if (keel_discovery_start(&disc) != 0) {
        KEEL_ERROR("cannot start discovery");
        return 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    ev_signal sig_term, sig_int, sig_hup;
    ev_signal_init(&sig_term, on_signal, SIGTERM);
    ev_signal_init(&sig_int, on_signal, SIGINT);
    ev_signal_init(&sig_hup, on_reload, SIGHUP);
    ev_signal_start(rt.control_loop, &sig_term);
    ev_signal_start(rt.control_loop, &sig_int);
    ev_signal_start(rt.control_loop, &sig_hup);

    for (size_t i = 0; i < cfg->n_listeners; i++)
        KEEL_INFO("listener %s: %s on %s", cfg->listeners[i].name,
                  cfg->listeners[i].proto == KEEL_LISTEN_TCP ? "tcp" : "http",
                  cfg->listeners[i].addr.text);
    KEEL_INFO("keel %s started: %u workers, %zu clusters, admin %s", KEEL_VERSION, rt.n_workers,
              cfg->n_clusters, cfg->admin_enabled ? cfg->admin.text : "off");

    ev_run(rt.control_loop, 0);

    for (uint32_t i = 0; i < rt.n_workers; i++) {
        pthread_join(rt.workers[i].thread, NULL);
        struct keel_snap *s = atomic_exchange(&rt.workers[i].mailbox, NULL);
        if (s)
            keel_snap_unref(s);
        free(rt.workers[i].lsocks);
        free(rt.workers[i].pools);
        ev_loop_destroy(rt.workers[i].loop);
    }
    keel_admin_stop();
    keel_discovery_stop(&disc);
    keel_buf_cache_clear();
    keel_tls_shutdown();
    rt.snap = NULL;
    free(rt.workers);
    free(rt.lstats);
    free(rt.cstats);
    KEEL_INFO("drained, exiting");
    keel_config_free(cfg);
    return 0;
}
