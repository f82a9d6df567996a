// neox_cpt._native: pybind11 entry point. Each kernel lives in its own csrc/*.cpp file and
// registers itself through a register_*(py::module_&) function declared in kernels.h.
#include <pybind11/pybind11.h>

#include "kernels.h"

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
    m.doc() = "neox-cpt native kernels (index building hot loops)";
    m.attr("abi_version") = 1;
    register_kernels(m);
}
