/* flags.h — every command-line flag of kdslc in one table (flags.c): its
 * name, the commands that take it, the kind of its value and its limits,
 * the field it sets and its help. Every command parses its arguments with
 * kd_flags_parse, and `kdslc --help` prints the table; docs/cli.md's
 * options table lists the same flags (tests/test_cli.c checks both). */
#ifndef KDSL_FLAGS_H
#define KDSL_FLAGS_H

#include "codegen.h"
#include "run.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The commands, as bits of kd_flag.commands. */
enum {
    KD_CMD_SUMMARY = 1 << 0,
    KD_CMD_IR = 1 << 1,
    KD_CMD_COMPILE = 1 << 2,
    KD_CMD_TRAIN = 1 << 3,
    KD_CMD_EVALUATE = 1 << 4,
    KD_CMD_PREDICT = 1 << 5,
    KD_CMD_EXPORT = 1 << 6,
    KD_CMD_PLOT = 1 << 7,        /* reads a KDSL program, or only a history with --history */
    KD_CMD_ALL = (1 << 8) - 1,   /* the commands that read a KDSL program */
    KD_CMD_IMPORT = 1 << 8,
};

typedef struct kd_command {
    const char *name;
    int bit;
    const char *synopsis;   /* for --help: what follows the command's name */
    const char *help;       /* one line: what it does */
} kd_command;

#define KD_NCOMMANDS 9
extern const kd_command kd_commands[KD_NCOMMANDS];
/* The command named `name`, or NULL. */
const kd_command *kd_find_command(const char *name);

/* What one command line asks for: every flag's field, of every command. */
typedef struct kd_cli_options {
    const char *command;     /* argv[1] */
    int bit;                 /* its KD_CMD_ bit */
    const char *file;        /* the model file ("-": standard input) */
    const char *stage;       /* ir --stage (NULL: graph) */
    bool help;               /* --help after the command */
    kd_run_options run;      /* --model, -o, and train / evaluate / predict's flags */
    kd_codegen_options codegen;   /* compile's, and ir's for --stage opt and loops */
    const char *codegen_flag;     /* the first flag of the code generator given (ir checks the stage) */
    const char *weights_out;      /* import --weights-out */
    bool flops;                   /* summary --flops */
    bool show_shapes;             /* plot --show-shapes */
} kd_cli_options;

typedef enum kd_flag_kind {
    KD_FLAG_NONE,            /* a switch: sets a bool */
    KD_FLAG_INT,             /* a whole number in [lo, hi]: int, or int64_t for --seed */
    KD_FLAG_REAL,            /* a finite number above lo (at lo too if lo_closed), below hi: double */
    KD_FLAG_STRING,          /* a non-empty string: a name, a data spec */
    KD_FLAG_PATH,            /* a non-empty file name (or several, comma-separated) */
} kd_flag_kind;

typedef struct kd_flag {
    const char *name;        /* "--epochs", "-o" */
    int commands;            /* KD_CMD_ bits of the commands that take it */
    kd_flag_kind kind;
    const char *value;       /* for --help: "N", "F", "W.safetensors"... (NULL for a switch) */
    double lo, hi;           /* REAL: the range */
    bool lo_closed;          /* REAL: lo itself allowed */
    const char *want;        /* REAL: what the error says it wants ("a positive number") */
    size_t offset;           /* the field in kd_cli_options */
    bool int64;              /* INT: the field is an int64_t (else an int) */
    long long ilo, ihi;      /* INT: the range */
    /* Another setter than the kind's (--normalize, --dtype, --target): 0,
     * or 2 after printing the error. */
    int (*set)(const struct kd_flag *f, const char *v, kd_cli_options *o);
    bool codegen;            /* sets a field of the code generator (kd_cli_options.codegen_flag) */
    const char *help;
} kd_flag;

extern const kd_flag kd_flags[];
extern const int kd_nflags;
/* The flag named `name` (without any "=value"), or NULL. */
const kd_flag *kd_find_flag(const char *name);

/* Parses `kdslc COMMAND ARGS...` into *o (argv[1] a command of the table):
 * the model file, then each flag as `--flag value` or `--flag=value`.
 * 0, or 2 after printing the error (an unknown flag, with the nearest one
 * the command takes; a flag of another command; a missing or bad value). */
int kd_flags_parse(int argc, char **argv, kd_cli_options *o);

/* `kdslc --help`: the commands, then every flag with the commands that take it. */
void kd_flags_usage(FILE *out);

/* "kdslc: error: " fmt with arg, the nearest of known if any, and the hint
 * to run --help; returns 2. */
int kd_bad_usage(const char *fmt, const char *arg, const char *const *known, int nknown);

#endif
