/* cli.h — kdslc's command line (cli.c), for main.c and for the test build
 * of kdslc (tests/kdslc_cc.c). */
#ifndef KDSL_CLI_H
#define KDSL_CLI_H

/* Runs `kdslc ARGS...` (argv[0] the program's name) and returns its exit
 * status: 0, 1 (a failed run, bad input) or 2 (usage); a failed write to
 * stdout fails the command. */
int kd_cli(int argc, char **argv);

#endif
