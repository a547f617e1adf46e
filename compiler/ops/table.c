/* table.c — the op table: each entry lives in the op family's file. */
#include "ops.h"

#define OPS_ENTRY(E, n) [IR_##E] = &ir_op_##n,
#define OPS_ACT_ENTRY(NAME, ...) [IR_##NAME] = &ir_op_acts[KDA_##NAME],
const ir_op_info *const ir_ops[IR_OP_COUNT] = { OPS_LIST(OPS_ENTRY) KDA_LIST(OPS_ACT_ENTRY) };
#undef OPS_ENTRY
#undef OPS_ACT_ENTRY

/* An op added to the enum but not to OPS_LIST leaves a hole: catch it at compile time. */
#define OPS_COUNT(E, n) +1
_Static_assert(0 OPS_LIST(OPS_COUNT) + KDA_COUNT == IR_OP_COUNT, "every ir_op has an ir_ops entry");
#undef OPS_COUNT
