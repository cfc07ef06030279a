/* File transfer through the C API: an embedded file server
 * (dime_files_serve_embedded) and one on an external broker
 * (dime_files_serve), downloads by paths, glob and regex with a progress
 * callback and a summary, uploads to a writable server, and every error
 * status: missing file, path outside the root, read-only server, no such
 * server, bad arguments, a cancelling callback.
 *
 * usage: files ADDRESS   (an external broker) */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char root[256], dest[256], src[256];

static void put_file(const char *dir, const char *name, size_t len, unsigned seed)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) exit(2);
    for (size_t i = 0; i < len; i++) fputc((int)((i * 131u + seed) >> 3) & 0xff, f);
    fclose(f);
}

/* True if dir/name holds `len` bytes written by put_file with `seed`. */
static int same_file(const char *dir, const char *name, size_t len, unsigned seed)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t i = 0;
    int c, ok = 1;
    while ((c = fgetc(f)) != EOF) {
        if (i >= len || c != (int)(((i * 131u + seed) >> 3) & 0xff)) ok = 0;
        i++;
    }
    fclose(f);
    return ok && i == len;
}

struct seen {
    int calls;
    uint64_t last_bytes, total;
    int went_back;
};

static bool count_progress(void *userdata, const dime_files_progress *p)
{
    struct seen *s = userdata;
    if (p->bytes_done < s->last_bytes) s->went_back = 1;
    s->calls++;
    s->last_bytes = p->bytes_done;
    s->total = p->bytes_total;
    return true;
}

static bool stop_at_once(void *userdata, const dime_files_progress *p)
{
    (void)userdata;
    (void)p;
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: files ADDRESS\n");
        return 2;
    }
    char base[] = "/tmp/dime-c-files-XXXXXX";
    if (!mkdtemp(base)) return 2;
    snprintf(root, sizeof root, "%s/root", base);
    snprintf(dest, sizeof dest, "%s/dest", base);
    snprintf(src, sizeof src, "%s/src", base);
    mkdir(root, 0700);
    mkdir(src, 0700);
    put_file(root, "big.bin", 3 * 1048576 + 77, 1);
    put_file(root, "a.txt", 1000, 2);
    put_file(root, "b.txt", 2000, 3);
    put_file(src, "up.bin", 2 * 1048576 + 5, 4);

    char sock[300];
    snprintf(sock, sizeof sock, "unix:%s/files.sock", base);
    const char *listen[] = {sock};
    dime_files_server *ro = NULL;
    REQUIRE_OK(dime_files_serve_embedded(listen, 1, root, NULL, false, &ro));
    const char *addr = dime_files_server_address(ro, 0);
    CHECK(addr != NULL && strcmp(addr, sock) == 0);
    CHECK(dime_files_server_address(ro, 1) == NULL);

    /* Paths, with progress and a summary. */
    const char *paths[] = {"big.bin", "a.txt"};
    struct seen s = {0};
    dime_files_summary sum;
    dime_files_options opts = {.connections = 3, .piece = 256 * 1024};
    CHECK_OK(dime_files_download(addr, "files", DIME_FILES_PATHS, paths, 2, dest, &opts,
                                 count_progress, &s, &sum));
    CHECK(sum.files == 2 && sum.bytes == 3 * 1048576 + 77 + 1000 && sum.skipped == 0);
    CHECK(s.calls >= 1 && !s.went_back && s.last_bytes == s.total);
    CHECK(same_file(dest, "big.bin", 3 * 1048576 + 77, 1));
    CHECK(same_file(dest, "a.txt", 1000, 2));
    /* Again: everything is there already. */
    CHECK_OK(dime_files_download(addr, "files", DIME_FILES_PATHS, paths, 2, dest, NULL, NULL,
                                 NULL, &sum));
    CHECK(sum.files == 0 && sum.skipped == 2);
    /* A glob and a regex; the summary may be NULL. */
    const char *glob[] = {"*.txt"};
    CHECK_OK(dime_files_download(addr, "files", DIME_FILES_GLOB, glob, 1, dest, NULL, NULL, NULL,
                                 NULL));
    CHECK(same_file(dest, "b.txt", 2000, 3));
    const char *regex[] = {"^b\\.txt$"};
    CHECK_OK(dime_files_download(addr, "files", DIME_FILES_REGEX, regex, 1, dest, NULL, NULL,
                                 NULL, &sum));
    CHECK(sum.skipped == 1);

    /* Errors. */
    const char *missing[] = {"nope"};
    CHECK_STATUS(dime_files_download(addr, "files", DIME_FILES_PATHS, missing, 1, dest, NULL,
                                     NULL, NULL, NULL),
                 DIME_STATUS_FILE_NOT_FOUND);
    CHECK_ERROR_HAS("nope");
    const char *outside[] = {"../x"};
    CHECK_STATUS(dime_files_download(addr, "files", DIME_FILES_PATHS, outside, 1, dest, NULL,
                                     NULL, NULL, NULL),
                 DIME_STATUS_PERMISSION_DENIED);
    const char *up[] = {"up.bin"};
    CHECK_STATUS(dime_files_upload(addr, "files", DIME_FILES_PATHS, up, 1, src, "", NULL, NULL,
                                   NULL, NULL),
                 DIME_STATUS_PERMISSION_DENIED);
    CHECK_ERROR_HAS("read-only");
    dime_files_options quick = {.server_timeout_ms = 200};
    CHECK_STATUS(dime_files_download(addr, "nobody", DIME_FILES_PATHS, paths, 1, dest, &quick,
                                     NULL, NULL, NULL),
                 DIME_STATUS_NO_PROVIDER);
    CHECK_STATUS(dime_files_download(addr, "files", 7, paths, 1, dest, NULL, NULL, NULL, NULL),
                 DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_files_download(addr, "files", DIME_FILES_GLOB, paths, 2, dest, NULL, NULL,
                                     NULL, NULL),
                 DIME_STATUS_INVALID_ARGUMENT);
    dime_files_options bad_piece = {.piece = 1000};
    CHECK_STATUS(dime_files_download(addr, "files", DIME_FILES_PATHS, paths, 1, dest, &bad_piece,
                                     NULL, NULL, NULL),
                 DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_files_download(NULL, "files", DIME_FILES_PATHS, paths, 1, dest, NULL, NULL,
                                     NULL, NULL),
                 DIME_STATUS_NULL_ARGUMENT);
    char dest2[300];
    snprintf(dest2, sizeof dest2, "%s/cancelled", base);
    const char *big[] = {"big.bin"};
    dime_files_options tiny = {.connections = 1, .in_flight = 1, .piece = 4096,
                               .progress_interval_ms = 1};
    CHECK_STATUS(dime_files_download(addr, "files", DIME_FILES_PATHS, big, 1, dest2, &tiny,
                                     stop_at_once, NULL, NULL),
                 DIME_STATUS_CANCELLED);
    char final_name[400];
    snprintf(final_name, sizeof final_name, "%s/big.bin", dest2);
    CHECK(access(final_name, F_OK) != 0);
    CHECK_OK(dime_files_server_stop(ro));
    CHECK_OK(dime_files_server_stop(NULL));

    /* A writable server on the external broker. */
    dime_files_server *rw = NULL;
    REQUIRE_OK(dime_files_serve(argv[1], root, "rw", true, &rw));
    CHECK(dime_files_server_address(rw, 0) == NULL);
    CHECK_OK(dime_files_upload(argv[1], "rw", DIME_FILES_PATHS, up, 1, src, "in", NULL, NULL,
                               NULL, &sum));
    CHECK(sum.files == 1 && sum.bytes == 2 * 1048576 + 5);
    char in_dir[300];
    snprintf(in_dir, sizeof in_dir, "%s/in", root);
    CHECK(same_file(in_dir, "up.bin", 2 * 1048576 + 5, 4));
    CHECK_STATUS(dime_files_serve(argv[1], "/no/such/dir", "x", false, &rw),
                 DIME_STATUS_FILE_NOT_FOUND);
    CHECK_OK(dime_files_server_stop(rw));

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    if (system(cmd) != 0) return 2;
    return check_done();
}
