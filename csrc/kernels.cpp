// Kernel registry: add one line per kernel file.
#include "kernels.h"

void register_kernels(pybind11::module_& m) { register_replay_kernels(m); }
