/* Failures give the right status and message, never a crash: bad address,
 * nothing listening, a server that dies, wrong-type accessors, NULL
 * arguments, free(NULL), double close, use after close, timeouts; and
 * connection failures give the OS's errno in dime_last_errno().
 *
 * usage: errors ADDRESS DIME_SERVER_BINARY TMPDIR
 *
 * ADDRESS is a live server; the program starts its own second server from
 * DIME_SERVER_BINARY on a socket in TMPDIR and kills it mid-session. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static void bad_addresses(void)
{
    dime_client *c = (dime_client *)&c; /* must stay untouched on failure */
    dime_client *const before = c;

    CHECK_STATUS(dime_connect("nonsense", &c), DIME_STATUS_INVALID_ARGUMENT);
    CHECK(c == before);
    CHECK(strlen(dime_last_error()) > 0);
    CHECK(dime_last_errno() == 0); /* not the OS's doing */
    CHECK_STATUS(dime_connect("tcp:notaport", &c), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_connect("unix:/nonexistent/dir/dime.sock", &c),
                 DIME_STATUS_CONNECTION_LOST);
    CHECK(c == before);
    CHECK(dime_last_errno() == ENOENT);
    /* One message, naming the address once, saying what happened. */
    CHECK_ERROR_HAS("cannot connect to unix:/nonexistent/dir/dime.sock: ");
    CHECK(strstr(dime_last_error(), "connection lost") == NULL);
    CHECK(strstr(strstr(dime_last_error(), "dime.sock") + 1, "dime.sock") == NULL);
    CHECK_STATUS(dime_connect(NULL, &c), DIME_STATUS_NULL_ARGUMENT);
    CHECK_ERROR_HAS("address");
    CHECK_STATUS(dime_connect("unix:/tmp/x", NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_ERROR_HAS("out");
    {
        /* Not UTF-8. */
        const char bad[] = {'u', 'n', 'i', 'x', ':', '\xff', '\0'};
        CHECK_STATUS(dime_connect(bad, &c), DIME_STATUS_INVALID_ARGUMENT);
        CHECK_ERROR_HAS("UTF-8");
    }
}

/* A socket bound to `addr` but not listening: connecting to it is refused
 * (ECONNREFUSED), deterministically and without racing for a free port. */
static int bound_not_listening(int family, const struct sockaddr *addr, socklen_t len)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, addr, len) != 0) {
        perror("bound_not_listening");
        exit(2);
    }
    return fd;
}

/* dime_last_errno() says why a connect failed, and a successful call in
 * between leaves it alone. */
static void connect_errnos(const char *tmpdir)
{
    dime_client *c = NULL;
    struct sockaddr_in in;
    struct sockaddr_un un;
    socklen_t len = sizeof in;
    char address[700];
    int fd;

    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = bound_not_listening(AF_INET, (const struct sockaddr *)&in, sizeof in);
    getsockname(fd, (struct sockaddr *)&in, &len);
    snprintf(address, sizeof address, "tcp:127.0.0.1:%u", (unsigned)ntohs(in.sin_port));
    CHECK_STATUS(dime_connect(address, &c), DIME_STATUS_CONNECTION_LOST);
    CHECK(dime_last_errno() == ECONNREFUSED);
    CHECK_ERROR_HAS("cannot connect to tcp:127.0.0.1:");
    CHECK(dime_version() != NULL); /* a call that cannot fail keeps it */
    CHECK(dime_last_errno() == ECONNREFUSED);
    close(fd);

    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof un.sun_path, "%s/refusing.sock", tmpdir);
    fd = bound_not_listening(AF_UNIX, (const struct sockaddr *)&un, sizeof un);
    snprintf(address, sizeof address, "unix:%s", un.sun_path);
    CHECK_STATUS(dime_connect(address, &c), DIME_STATUS_CONNECTION_LOST);
    CHECK(dime_last_errno() == ECONNREFUSED);
    close(fd);
    unlink(un.sun_path);
    CHECK(c == NULL);
}

static void value_misuse(void)
{
    dime_value *d = dime_value_new_double(1.0);
    dime_value *list = dime_value_new_list();
    dime_value *out = NULL;
    const dime_value *cout = NULL;
    int64_t i = 77;
    double x = 0;
    const char *p = NULL;
    size_t n = 12345, dims[2] = {2, 2}, huge[2] = {(size_t)-1, 4};
    dime_class cls = 0;
    const void *data = NULL;
    double four[4] = {1, 2, 3, 4};

    /* Wrong-type accessors fail and leave outputs alone. */
    CHECK_STATUS(dime_value_get_int64(d, &i), DIME_STATUS_WRONG_TYPE);
    CHECK(i == 77);
    CHECK_ERROR_HAS("int64");
    CHECK_ERROR_HAS("double");
    CHECK_STATUS(dime_value_get_string(d, &p, &n), DIME_STATUS_WRONG_TYPE);
    CHECK(p == NULL && n == 12345);
    CHECK_STATUS(dime_matrix_class(d, &cls), DIME_STATUS_WRONG_TYPE);
    CHECK_STATUS(dime_matrix_data(list, &data, &n), DIME_STATUS_WRONG_TYPE);
    CHECK_STATUS(dime_value_list_len(d, &n), DIME_STATUS_WRONG_TYPE);
    CHECK_STATUS(dime_value_map_len(list, &n), DIME_STATUS_WRONG_TYPE);
    CHECK_STATUS(dime_value_list_get(list, 0, &cout), DIME_STATUS_OUT_OF_RANGE);
    CHECK(cout == NULL);
    CHECK_STATUS(dime_value_list_append(list, list), DIME_STATUS_INVALID_ARGUMENT);

    /* On failure ownership stays with the caller: free it ourselves. */
    {
        dime_value *item = dime_value_new_int8(1);
        CHECK_STATUS(dime_value_list_append(d, item), DIME_STATUS_WRONG_TYPE);
        dime_value_free(item);
    }

    /* NULL everywhere. */
    CHECK(dime_value_kind(NULL) == DIME_KIND_INVALID);
    CHECK_STATUS(dime_value_get_double(NULL, &x), DIME_STATUS_NULL_ARGUMENT);
    CHECK_ERROR_HAS("value");
    CHECK_STATUS(dime_value_get_double(d, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_value_get_complex_double(d, NULL, &x), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_value_list_append(list, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_value_list_append(NULL, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_value_map_get(NULL, "a", &cout), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_value_new_string(NULL, 3, &out), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_value_new_matrix(DIME_CLASS_DOUBLE, 2, NULL, four, &out),
                 DIME_STATUS_NULL_ARGUMENT);
    CHECK_ERROR_HAS("dims");
    CHECK_STATUS(dime_value_new_matrix(DIME_CLASS_DOUBLE, 2, dims, NULL, &out),
                 DIME_STATUS_NULL_ARGUMENT);
    CHECK_ERROR_HAS("data");
    CHECK_STATUS(dime_value_new_matrix(DIME_CLASS_DOUBLE, 2, dims, four, NULL),
                 DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_value_clone(NULL, &out), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_matrix_take_data(NULL, NULL, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK(dime_messages_len(NULL) == 0);
    CHECK_STATUS(dime_messages_get(NULL, 0, &p, &cout), DIME_STATUS_NULL_ARGUMENT);
    CHECK(out == NULL);

    /* Invalid arguments. */
    CHECK_STATUS(dime_value_new_matrix(99, 2, dims, four, &out), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("class");
    CHECK(dime_class_size(99) == 0);
    CHECK_STATUS(dime_value_new_matrix(DIME_CLASS_DOUBLE, 2, huge, four, &out),
                 DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_value_new_string("\xc3\x28", 2, &out), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("UTF-8");
    CHECK(out == NULL);

    /* Free NULL is a no-op for every free function: it neither crashes nor
     * reports anything, so the last error is still the UTF-8 one above. */
    dime_value_free(NULL);
    dime_client_free(NULL);
    dime_messages_free(NULL);
    dime_data_free(NULL, 0);
    dime_data_free(NULL, 100);
    CHECK_ERROR_HAS("not valid UTF-8");

    dime_value_free(d);
    dime_value_free(list);
}

static void client_misuse(const char *address)
{
    dime_client *c = NULL;
    dime_value *v = dime_value_new_double(1.0);
    dime_messages *msgs = NULL;
    const char *groups[] = {"errors"};
    const char *null_groups[] = {NULL};
    size_t n = 999;

    REQUIRE_OK(dime_connect(address, &c));

    CHECK_STATUS(dime_join(NULL, groups, 1), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_join(c, NULL, 1), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_join(c, null_groups, 1), DIME_STATUS_NULL_ARGUMENT);
    CHECK_ERROR_HAS("groups[0]");
    CHECK_STATUS(dime_send(c, "errors", NULL, v), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_send(c, "errors", "x", NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_sync(c, -1, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_wait(c, 0, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_close(NULL), DIME_STATUS_NULL_ARGUMENT);

    /* Server-side refusals keep the client usable. */
    CHECK_STATUS(dime_send(c, "no-such-group", "x", v), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("No such group exists: no-such-group");
    CHECK_OK(dime_join(c, groups, 1));
    CHECK_STATUS(dime_join(c, groups, 1), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("already in group");
    CHECK_OK(dime_leave(c, groups, 1));
    CHECK_STATUS(dime_leave(c, groups, 1), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("not in group");

    /* Nothing queued: a short wait times out, the client stays usable. */
    CHECK_STATUS(dime_wait(c, 50, &n), DIME_STATUS_TIMEOUT);
    CHECK(n == 999);
    CHECK_OK(dime_sync(c, DIME_SYNC_ALL, &msgs));
    CHECK(dime_messages_len(msgs) == 0);
    CHECK_STATUS(dime_messages_get(msgs, 0, NULL, NULL), DIME_STATUS_NULL_ARGUMENT);
    dime_messages_free(msgs);
    msgs = NULL;

    /* Close twice is fine; use after close says so. */
    CHECK_OK(dime_close(c));
    CHECK_OK(dime_close(c));
    CHECK_STATUS(dime_send(c, "errors", "x", v), DIME_STATUS_CLOSED);
    CHECK_ERROR_HAS("closed");
    CHECK_STATUS(dime_sync(c, 1, &msgs), DIME_STATUS_CLOSED);
    CHECK(msgs == NULL);
    dime_client_free(c);
    dime_value_free(v);
}

/* Starts `server -l unix:PATH`, waits for the socket, returns the pid. */
static pid_t start_server(const char *server, const char *path)
{
    char listen[600];
    struct stat st;
    int i;
    pid_t pid;
    snprintf(listen, sizeof listen, "unix:%s", path);
    pid = fork();
    if (pid == 0) {
        execl(server, server, "-l", listen, (char *)NULL);
        _exit(127);
    }
    /* Wait until it accepts connections: the socket file appears at bind,
     * a moment before listen, so its existence is not enough. */
    for (i = 0; i < 1000; i++) {
        struct timespec ms10 = {0, 10 * 1000 * 1000};
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_STREAM, 0), ok;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
        ok = stat(path, &st) == 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok) break;
        nanosleep(&ms10, NULL);
    }
    return pid;
}

static void server_dies(const char *server, const char *tmpdir)
{
    char path[512], address[600];
    dime_client *c = NULL;
    dime_value *v = dime_value_new_double(1.0);
    dime_value *devices = NULL;
    const char *groups[] = {"doomed"};
    pid_t pid;
    int st, i, err;
    dime_status s = DIME_STATUS_OK;

    snprintf(path, sizeof path, "%s/doomed.sock", tmpdir);
    snprintf(address, sizeof address, "unix:%s", path);
    pid = start_server(server, path);
    if (dime_connect(address, &c) != DIME_STATUS_OK) {
        /* Never leave the server behind: it would hold our output open. */
        CHECK(!"connected to the doomed server");
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        dime_value_free(v);
        return;
    }
    CHECK_OK(dime_join(c, groups, 1));
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);

    /* The first write may still land in the socket buffer, so try a few
     * times; SIGPIPE must not kill us along the way. */
    for (i = 0; i < 3 && s == DIME_STATUS_OK; i++) {
        s = dime_send(c, "doomed", "x", v);
    }
    CHECK_STATUS(s, DIME_STATUS_CONNECTION_LOST);
    CHECK_ERROR_HAS("connection lost");
    /* Writing to a dead peer, or reading its reset or its end of stream. */
    err = dime_last_errno();
    CHECK(err == EPIPE || err == ECONNRESET);
    /* Later calls fail fast with the same status and errno, and say why. */
    CHECK_STATUS(dime_devices(c, &devices), DIME_STATUS_CONNECTION_LOST);
    CHECK_ERROR_HAS("earlier");
    CHECK(dime_last_errno() == err);
    CHECK(devices == NULL);
    CHECK_OK(dime_close(c));
    dime_client_free(c);

    /* Connecting to the dead socket fails cleanly: the file is still
     * there, nobody listens on it. */
    c = NULL;
    CHECK_STATUS(dime_connect(address, &c), DIME_STATUS_CONNECTION_LOST);
    CHECK(dime_last_errno() == ECONNREFUSED || dime_last_errno() == ENOENT);
    CHECK(c == NULL);
    dime_value_free(v);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDRESS DIME_SERVER_BINARY TMPDIR\n", argv[0]);
        return 2;
    }
    CHECK(strcmp(dime_last_error(), "") == 0);
    bad_addresses();
    connect_errnos(argv[3]);
    value_misuse();
    client_misuse(argv[1]);
    server_dies(argv[2], argv[3]);
    return check_done();
}
