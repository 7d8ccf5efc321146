/* whisper.cpp reference timing for the speech benchmark: the same decode that
 * stt-tts's WhisperStt runs (greedy, same threads, audio_ctx, token cap, flags), called
 * straight through whisper.cpp's C API with no Rust in between.
 *
 * usage: speech-bench-ref MODEL INPUT.f32 THREADS AUDIO_CTX MAX_TOKENS RUNS
 * INPUT.f32 is raw little-endian float32 mono 16 kHz, already padded as WhisperStt pads.
 * Prints one line: "ref_ms <median> text <transcript of the last run>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "whisper.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level; (void)text; (void)user;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL INPUT.f32 THREADS AUDIO_CTX MAX_TOKENS RUNS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[3]), audio_ctx = atoi(argv[4]), max_tokens = atoi(argv[5]), runs = atoi(argv[6]);
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f) / 4;
    fseek(f, 0, SEEK_SET);
    float *pcm = malloc(n * sizeof(float));
    if (fread(pcm, sizeof(float), n, f) != (size_t)n) { fprintf(stderr, "short read\n"); return 1; }
    fclose(f);

    whisper_log_set(quiet, NULL);
    struct whisper_context_params cp = whisper_context_default_params();
    cp.use_gpu = false;
    struct whisper_context *ctx = whisper_init_from_file_with_params(argv[1], cp);
    if (!ctx) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    struct whisper_state *st = whisper_init_state(ctx);

    struct whisper_full_params p = whisper_full_default_params(WHISPER_SAMPLING_GREEDY);
    p.n_threads = threads;
    p.greedy.best_of = 1;
    p.translate = false;
    p.no_context = true;
    p.suppress_blank = true;
    p.suppress_nst = true;
    p.no_speech_thold = 0.6f;
    p.temperature_inc = 0.0f;
    p.print_special = p.print_progress = p.print_realtime = p.print_timestamps = false;
    p.audio_ctx = audio_ctx;
    p.max_tokens = max_tokens;
    if (whisper_is_multilingual(ctx)) p.language = "en";

    double *t = malloc(runs * sizeof(double));
    for (int i = 0; i < runs; i++) {
        double t0 = now_ms();
        if (whisper_full_with_state(ctx, st, p, pcm, (int)n) != 0) { fprintf(stderr, "whisper_full failed\n"); return 1; }
        t[i] = now_ms() - t0;
    }
    qsort(t, runs, sizeof(double), cmp);
    printf("ref_ms %.1f text", t[runs / 2]);
    for (int s = 0; s < whisper_full_n_segments_from_state(st); s++) printf(" %s", whisper_full_get_segment_text_from_state(st, s));
    printf("\n");
    whisper_free_state(st);
    whisper_free(ctx);
    return 0;
}
