/* activations_undef.h — undefines the formula vocabulary of activations.h
 * (X Y DY P K ADD ... SEL_GT), which each consumer defines its own way
 * before expanding KDA_LIST: included after the expansion, so the word list
 * is written once. No include guard: it is meant to be included again. */
#undef X
#undef Y
#undef DY
#undef P
#undef K
#undef ADD
#undef SUB
#undef MUL
#undef DIV
#undef NEG
#undef MIN
#undef MAX
#undef ABS
#undef SQUARE
#undef EXP
#undef LOG1P
#undef EXPM1
#undef TANH
#undef ERF
#undef SIGMOID
#undef RELU
#undef SEL_GT
