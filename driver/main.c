/* main.c — kdslc: the command line is cli.c. */
#include "cli.h"

int main(int argc, char **argv) { return kd_cli(argc, argv); }
