/* Tokens, TLS options and connect flags from C: dime_connect_options (new,
 * setters, free), dime_connect_with, DIME_TOKEN for dime_connect, and the
 * statuses of a refused token and a refused command against a server
 * started with --auth.
 *
 * usage: security DIME_SERVER_BINARY TMPDIR */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* Starts `server -l unix:PATH --auth USERS`, waits for the socket. */
static pid_t start_server(const char *server, const char *path, const char *users)
{
    char listen[600];
    struct stat st;
    int i;
    pid_t pid;
    snprintf(listen, sizeof listen, "unix:%s", path);
    pid = fork();
    if (pid == 0) {
        execl(server, server, "-l", listen, "--auth", users, (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 500 && stat(path, &st) != 0; i++) {
        struct timespec ms10 = {0, 10 * 1000 * 1000};
        nanosleep(&ms10, NULL);
    }
    return pid;
}

static void options_misuse(void)
{
    dime_connect_options *o = NULL;
    dime_client *c = (dime_client *)&c;
    dime_client *const before = c;

    CHECK_STATUS(dime_connect_options_new(NULL), DIME_STATUS_NULL_ARGUMENT);
    REQUIRE_OK(dime_connect_options_new(&o));
    CHECK_OK(dime_connect_options_set_token(o, "t"));
    CHECK_OK(dime_connect_options_set_token(o, NULL));
    CHECK_STATUS(dime_connect_options_set_token(NULL, "t"), DIME_STATUS_NULL_ARGUMENT);
    /* The connect flags travel in the same options. */
    CHECK_OK(dime_connect_options_set_flags(o, DIME_CONNECT_LAYOUT));
    CHECK_STATUS(dime_connect_options_set_flags(o, 0x80), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("0x80");
    CHECK_STATUS(dime_connect_options_set_flags(NULL, 0), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_connect_options_set_tls_client_cert(o, "c.pem", NULL),
                 DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("both");
    CHECK_OK(dime_connect_options_set_tls_client_cert(o, NULL, NULL));
    /* A CA file that does not exist: named in the error, nothing connects. */
    CHECK_OK(dime_connect_options_set_tls_ca(o, "/nonexistent/ca.pem"));
    CHECK_STATUS(dime_connect_with("tls:127.0.0.1:1", o, &c), DIME_STATUS_CONNECTION_LOST);
    CHECK_ERROR_HAS("/nonexistent/ca.pem");
    CHECK(c == before);
    CHECK_STATUS(dime_connect_with("tls:127.0.0.1:1", NULL, &c), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_connect_with("tls:127.0.0.1:1", o, NULL), DIME_STATUS_NULL_ARGUMENT);
    dime_connect_options_free(o);
    dime_connect_options_free(NULL);
}

static void tokens(const char *server, const char *tmpdir)
{
    char path[512], address[600], users[512];
    const char *ok1[] = {"ok.1"}, *ok2[] = {"ok.2"}, *no[] = {"no"};
    dime_connect_options *o = NULL;
    dime_client *c = NULL;
    FILE *f;
    pid_t pid;
    int st;

    snprintf(users, sizeof users, "%s/users", tmpdir);
    f = fopen(users, "w");
    REQUIRE_OK(f ? DIME_STATUS_OK : DIME_STATUS_INVALID_ARGUMENT);
    fputs("role r join:ok.*\nuser tok-c r\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/auth.sock", tmpdir);
    snprintf(address, sizeof address, "unix:%s", path);
    pid = start_server(server, path, users);

    /* No token: refused, with the reason. */
    unsetenv("DIME_TOKEN");
    CHECK_STATUS(dime_connect(address, &c), DIME_STATUS_NOT_PERMITTED);
    CHECK_ERROR_HAS("Authentication required");
    REQUIRE_OK(dime_connect_options_new(&o));
    CHECK_OK(dime_connect_options_set_token(o, "wrong"));
    CHECK_STATUS(dime_connect_with(address, o, &c), DIME_STATUS_NOT_PERMITTED);
    CHECK_ERROR_HAS("token is not valid");

    /* The right token; a refused command changes nothing and the client
     * stays usable. */
    CHECK_OK(dime_connect_options_set_token(o, "tok-c"));
    REQUIRE_OK(dime_connect_with(address, o, &c));
    CHECK_OK(dime_join(c, ok1, 1));
    CHECK_STATUS(dime_join(c, no, 1), DIME_STATUS_NOT_PERMITTED);
    CHECK_ERROR_HAS("may not join group 'no'");
    CHECK_OK(dime_join(c, ok2, 1));
    dime_client_free(c);

    /* A token and connect flags in one options object: a DiME2-only
     * client that authenticates (it asked for no extension). */
    CHECK_OK(dime_connect_options_set_flags(o, DIME_CONNECT_DIME2));
    c = NULL;
    REQUIRE_OK(dime_connect_with(address, o, &c));
    dime_connect_options_free(o);
    CHECK_OK(dime_join(c, ok1, 1));
    CHECK_STATUS(dime_join(c, no, 1), DIME_STATUS_NOT_PERMITTED);
    dime_client_free(c);

    /* DIME_TOKEN for plain dime_connect. */
    setenv("DIME_TOKEN", "tok-c", 1);
    c = NULL;
    CHECK_OK(dime_connect(address, &c));
    CHECK_STATUS(dime_join(c, no, 1), DIME_STATUS_NOT_PERMITTED);
    dime_client_free(c);
    unsetenv("DIME_TOKEN");

    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: security DIME_SERVER_BINARY TMPDIR\n");
        return 2;
    }
    options_misuse();
    tokens(argv[1], argv[2]);
    return check_done();
}
