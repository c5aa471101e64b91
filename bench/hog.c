/* Benchmark workload: a seeded, deterministic mix of incompressible and text data, held in
 * memory and written to the container's root file-system. Two containers started with the same
 * arguments hold byte-identical data, so ferry and Podman checkpoint the same thing.
 *
 * usage: hog MEM_BYTES DISK_BYTES SEED   (half of each is pseudo-random, half is text)
 * writes /data/random.bin and /data/text.txt, fills its heap, writes /data/ready, then sleeps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t state;

static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static void fill_random(unsigned char *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = next();
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] = (unsigned char)next();
}

static const char *words[] = {"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing",
                              "elit", "sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore",
                              "et", "dolore", "magna", "aliqua", "checkpoint", "restore", "ferry"};

static void fill_text(char *p, size_t n) {
    size_t i = 0, line = 0;
    char buf[64];
    while (i < n) {
        int k = snprintf(buf, sizeof buf, "%zu ", line++);
        for (int w = 0; w < 8 && k < 48; w++) {
            const char *s = words[next() % (sizeof words / sizeof *words)];
            k += snprintf(buf + k, sizeof buf - k, "%s ", s);
        }
        buf[k - 1] = '\n';
        size_t m = (size_t)k < n - i ? (size_t)k : n - i;
        memcpy(p + i, buf, m);
        i += m;
    }
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: hog MEM_BYTES DISK_BYTES SEED\n");
        return 2;
    }
    size_t mem = strtoull(argv[1], 0, 10), disk = strtoull(argv[2], 0, 10);
    state = strtoull(argv[3], 0, 10) | 1;
    size_t half = disk / 2;
    unsigned char *tmp = malloc(half ? half : 1);
    fill_random(tmp, half);
    write_file("/data/random.bin", tmp, half);
    fill_text((char *)tmp, disk - half);
    write_file("/data/text.txt", tmp, disk - half);
    free(tmp);
    unsigned char *heap = malloc(mem ? mem : 1);
    fill_random(heap, mem / 2);
    fill_text((char *)heap + mem / 2, mem - mem / 2);
    write_file("/data/ready", "1\n", 2);
    for (;;) pause();
}
