/* emu.cc — the CUDA backend's sources as one host C++ translation unit for the SIMT
 * emulator (tests/simt): librwkv-cuda-emu.so, the test-only backend `cuda-emu`. Nothing of
 * its own: every line it runs is the .cu code that nvcc builds for the GPU. */
#include "backend.cu"
#include "rows.cu"
#include "wkv7.cu"
