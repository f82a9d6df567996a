// Declarations of the kernel registration functions (one per csrc/*.cpp file).
#pragma once
#include <pybind11/pybind11.h>

void register_kernels(pybind11::module_& m);
void register_replay_kernels(pybind11::module_& m);  // replay_index.cpp
