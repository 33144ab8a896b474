# attnlab -- build, test, run, bench.
#   make              libattnlab.a, libattnlab.so and the attnlab program
#   make test         every test (C unit tests, Lua tests, gradient checks, fixtures, fuzz, smoke,
#                     sweeps on a real Slurm started on localhost)
#   make test SANITIZE=1   the same under ASan/UBSan (separate build folder)
#   make run          the in-context regression study, headless (README's first command);
#                     make run VIEW=1 opens the viewer on it while it trains
#   make bench        side-by-side timings against the PyTorch reference -> bench/RESULTS.md
#                     (make bench PARTS="gpt attention": some parts only)
#   make CUDA=1       the same with the CUDA backend (core/cuda/*.cu through nvcc, cuBLAS), in
#                     build-cuda/; ./attnlab then points at it.  make test-cuda CUDA=1 checks every
#                     op that has a CUDA kernel against the CPU, on a machine with a GPU
#   make test-cuda-emulated   the same programs with the kernels run by a CPU emulation of CUDA
#                     (tests/cuda_emulation; no nvcc, no GPU); part of make test
CC       ?= cc
OPT      ?= -O3 -march=native
BUILD    := build
ifeq ($(SANITIZE),1)
  OPT    := -O1 -g -fno-omit-frame-pointer
  SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += $(SAN)
  BUILD  := build-san
endif
WARN     := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
# -fno-math-errno: nothing reads errno, and without it no loop that calls sqrt or exp vectorises
CFLAGS   := -std=gnu11 $(OPT) $(SAN) $(WARN) -fPIC -fopenmp -fno-math-errno -Icore/include -Icore $(EXTRA_CFLAGS)
LDLIBS   := -lopenblas -lstb -lm -lpthread
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
LUAJIT_LIBS   := $(shell pkg-config --libs luajit 2>/dev/null || echo -lluajit-5.1)
SDL_CFLAGS    := $(shell pkg-config --cflags sdl2 2>/dev/null || echo -I/usr/include/SDL2 -D_REENTRANT)
SDL_LIBS      := $(shell pkg-config --libs sdl2 2>/dev/null || echo -lSDL2)


CORE_SRC := $(wildcard core/*.c core/ops/*.c core/attention/*.c)
# The CUDA backend: sm_90 code for the H100/H200 plus PTX that newer GPUs compile at load.  Without
# CUDA=1 its entry points are core/cuda/absent.c's, which refuse.
ifeq ($(CUDA),1)
  CUDA_HOME ?= /usr/local/cuda
  NVCC      ?= $(CUDA_HOME)/bin/nvcc
  BUILD     := build-cuda$(if $(filter 1,$(SANITIZE)),-san)
  NVCCFLAGS := -O3 -std=c++17 -gencode arch=compute_90,code=[sm_90,compute_90] -Xcompiler -fPIC,-fopenmp \
               -Icore/include -Icore -DAL_WITH_CUDA
  CFLAGS    += -DAL_WITH_CUDA
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
  CUDA_OBJ  := $(patsubst %.cu,$(BUILD)/%.o,$(wildcard core/cuda/*.cu))
else
  CORE_SRC  += core/cuda/absent.c
endif
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o) $(CUDA_OBJ)
LIB_A    := $(BUILD)/libattnlab.a
LIB_SO   := $(BUILD)/libattnlab.so
PROGRAM  := $(BUILD)/attnlab
# the program: main.c and its parts (lua/program.h lists them)
PROGRAM_SRC := $(wildcard lua/*.c)
# the viewer is its own program: the training process never loads SDL, and `attnlab view` and
# `attnlab run --view` start it (lua/main.c)
VIEWER_SRC := $(wildcard viewer/*.c)
VIEWER_OBJ := $(VIEWER_SRC:%.c=$(BUILD)/%.o)
VIEWER     := $(BUILD)/attnlab-view
C_TESTS  := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

# What the build and the tests need from Debian; `make deps` installs the missing ones (apt-get,
# through sudo when not root).  `make run` and `make test` start with it, so on a fresh Debian
# machine each is the one command to type.
DEBIAN_PACKAGES := gcc make pkg-config luajit libluajit-5.1-dev libopenblas-dev libstb-dev libsdl2-dev \
                   fonts-dejavu-core
# and what `make test` needs besides: tests/lua/test_sweep_slurm.sh starts a real Slurm on localhost
# (its own munged, slurmctld and slurmd, in a temporary directory; nothing of /etc is used),
# tests/lua/test_dist.lua runs two ranks under Open MPI's mpirun, and the CUDA kernels' emulation
# is C++ (g++)
TEST_PACKAGES   := slurmctld slurmd slurm-client munge openmpi-bin g++

.PHONY: all deps test-deps test test-cuda test-cuda-emulated run bench clean attnlab
# (./attnlab always points at the normal build, never at the sanitizer one)
all: $(LIB_A) $(LIB_SO) $(PROGRAM) $(VIEWER) $(if $(filter 1,$(SANITIZE)),,attnlab)

$(BUILD)/%.o: %.c core/include/attnlab.h core/internal.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -c -o $@ $<

# (the headers the .cu files share with the CPU's code, in core/ops and core/generic, are named too)
CUDA_SHARED_HEADERS := core/cuda/cuda_internal.h $(wildcard core/cuda/*.cuh core/ops/*.h core/generic/*.h) core/include/attnlab.h core/internal.h
$(BUILD)/core/cuda/%.o: core/cuda/%.cu $(CUDA_SHARED_HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

# made afresh: `ar rcs` alone keeps the objects of renamed or deleted sources (duplicate symbols)
$(LIB_A): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# -z nodelete: LuaJIT unloads libraries at exit, which would pull the code from under live OpenMP
# worker threads (a crash at exit)
$(LIB_SO): $(CORE_OBJ)
	$(CC) -shared -fopenmp -Wl,-z,nodelete $(LDFLAGS) -o $@.tmp $^ $(LDLIBS) && mv -f $@.tmp $@

# linked under a temporary name and renamed, so that a running attnlab is never overwritten
$(PROGRAM): $(PROGRAM_SRC) lua/program.h $(LIB_A)
	$(CC) $(CFLAGS) $(LUAJIT_CFLAGS) -o $@.tmp $(PROGRAM_SRC) -Wl,--whole-archive $(LIB_A) -Wl,--no-whole-archive \
	    $(LDFLAGS) -Wl,-E $(LUAJIT_LIBS) $(LDLIBS) -ldl && mv -f $@.tmp $@

$(BUILD)/viewer/%.o: viewer/%.c viewer/viewer.h core/include/attnlab.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SDL_CFLAGS) -MMD -c -o $@ $<

$(VIEWER): $(VIEWER_OBJ) $(LIB_A)
	$(CC) $(CFLAGS) -o $@.tmp $(VIEWER_OBJ) $(LIB_A) $(LDFLAGS) $(SDL_LIBS) $(LDLIBS) && mv -f $@.tmp $@

# the program at the top of the tree finds lua/ beside itself; it points at the build made last
# (build/, or build-cuda/ after make CUDA=1), so it is remade every time (a link costs nothing)
attnlab: $(PROGRAM)
	ln -sf $(PROGRAM) attnlab

$(BUILD)/tests/%: tests/c/%.c tests/c/check.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< $(LIB_A) $(LDFLAGS) $(LDLIBS)

# bench/run.sh's sgemm part: one thread's product rates, OpenBLAS beside attnlab's own
$(BUILD)/bench/sgemm_rates: bench/sgemm_rates.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(LDLIBS)

define install_missing
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEBIAN_PACKAGES))

test-deps:
	$(call install_missing,$(DEBIAN_PACKAGES) $(TEST_PACKAGES))

# the recursive makes keep `deps` strictly before any compilation, even under -j
test: test-deps
	@$(MAKE) --no-print-directory -j$$(nproc) all $(C_TESTS) $(if $(filter 1,$(CUDA)),,$(EMULATED_CUDA_TESTS))
	@BUILD=$(BUILD) sh tests/run_all.sh

# every op with a CUDA kernel against the CPU, gradients included (needs a GPU; CUDA=1 implied):
# the programs tests/cuda/test_*.c, run one after another, all of them even when one fails
CUDA_TESTS := $(patsubst tests/cuda/%.c,build-cuda/tests/%,$(wildcard tests/cuda/test_*.c))
test-cuda:
	@$(MAKE) --no-print-directory -j$$(nproc) CUDA=1 all $(CUDA_TESTS)
	@failed=0; for t in $(CUDA_TESTS); do $$t || failed=1; done; exit $$failed

build-cuda/tests/%: tests/cuda/%.c tests/cuda/compare.h tests/c/check.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< $(LIB_A) $(LDFLAGS) $(LDLIBS)

# The same programs against the kernels run on the CPU (tests/cuda_emulation; docs/cuda.md,
# "Testing without a GPU"): core/cuda/*.cu, made C++ by translate.sh (launches and __shared__
# declarations only) and compiled by g++ against the emulated CUDA runtime and cuBLAS, replace
# absent.c in a library of their own; the programs, $(BUILD)/tests/test_cuda*_emulated, are among
# those tests/run_all.sh runs.  Grid-stride launches are capped at 3 blocks, so that the tests'
# sizes take every grid-stride loop round more than once.  (-Wno-sign-compare: the kernels compare
# threadIdx.x, unsigned, with int bounds, which nvcc accepts without a word.)
EMULATED        := $(BUILD)/cuda-emulated
EMULATED_CXXFLAGS := -std=c++17 $(OPT) $(SAN) $(filter-out -Wstrict-prototypes,$(WARN)) -Wno-sign-compare -Wno-unknown-pragmas -fopenmp -fno-math-errno \
                     -Icore/include -Icore -Icore/cuda -Itests/cuda_emulation -DAL_CUDA_GRID_STRIDE_BLOCKS=3
EMULATION_HEADERS := $(wildcard tests/cuda_emulation/*.h)
EMULATED_OBJ    := $(patsubst core/cuda/%.cu,$(EMULATED)/core/cuda/%.o,$(wildcard core/cuda/*.cu)) \
                   $(patsubst tests/cuda_emulation/%.cpp,$(EMULATED)/emulation/%.o,$(wildcard tests/cuda_emulation/*.cpp))
EMULATED_LIB    := $(EMULATED)/libattnlab.a
# (the emulation switches threads with x86-64 assembly, tests/cuda_emulation/blocks.cpp: elsewhere
# there are no emulated programs, and make test-cuda-emulated says so)
EMULATED_CUDA_TESTS := $(if $(filter x86_64,$(shell uname -m)),\
                         $(patsubst tests/cuda/%.c,$(BUILD)/tests/%_emulated,$(wildcard tests/cuda/test_*.c)) \
                         $(EMULATED)/attnlab)

test-cuda-emulated:
	@[ -n "$(EMULATED_CUDA_TESTS)" ] || { echo "the CUDA emulation runs on x86-64 only"; exit 1; }
	@$(MAKE) --no-print-directory -j$$(nproc) $(EMULATED_CUDA_TESTS)
	@failed=0; for t in $(filter-out $(EMULATED)/attnlab,$(EMULATED_CUDA_TESTS)); do $$t || failed=1; done; \
	    sh tests/lua/test_studies_on_emulated_cuda.sh || failed=1; exit $$failed

# kept: the translated source is what the compiler's messages point into (by the .cu's lines)
.PRECIOUS: $(EMULATED)/core/cuda/%.cpp
$(EMULATED)/core/cuda/%.cpp: core/cuda/%.cu tests/cuda_emulation/translate.sh
	@mkdir -p $(dir $@)
	sh tests/cuda_emulation/translate.sh $< $@

$(EMULATED)/core/cuda/%.o: $(EMULATED)/core/cuda/%.cpp $(CUDA_SHARED_HEADERS) $(EMULATION_HEADERS)
	$(CXX) $(EMULATED_CXXFLAGS) -c -o $@ $<

$(EMULATED)/emulation/%.o: tests/cuda_emulation/%.cpp $(EMULATION_HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMULATED_CXXFLAGS) -c -o $@ $<

# the core's C objects of this build, with the emulated backend in place of absent.c
$(EMULATED_LIB): $(filter-out $(BUILD)/core/cuda/absent.o $(CUDA_OBJ),$(CORE_OBJ)) $(EMULATED_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%_emulated: tests/cuda/%.c tests/cuda/compare.h tests/c/check.h $(EMULATED_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< $(EMULATED_LIB) $(LDFLAGS) $(LDLIBS) -lstdc++

# The attnlab program on the emulated backend: `--device cuda` scripts run, slowly, on the CPU
# (tests/lua/test_cuda_emulated_study.lua runs a study with it)
$(EMULATED)/attnlab: $(PROGRAM_SRC) lua/program.h $(EMULATED_LIB)
	$(CC) $(CFLAGS) $(LUAJIT_CFLAGS) -o $@.tmp $(PROGRAM_SRC) -Wl,--whole-archive $(EMULATED_LIB) -Wl,--no-whole-archive \
	    $(LDFLAGS) -Wl,-E $(LUAJIT_LIBS) $(LDLIBS) -ldl -lstdc++ && mv -f $@.tmp $@

run: deps
	@$(MAKE) --no-print-directory -j$$(nproc) all
	./attnlab run experiments/icl_regression.lua $(if $(filter 1,$(VIEW)),--view)

bench: deps
	@$(MAKE) --no-print-directory -j$$(nproc) all
	bash bench/run.sh $(PARTS)

clean:
	rm -rf build build-san build-cuda attnlab

-include $(CORE_OBJ:.o=.d) $(VIEWER_OBJ:.o=.d)
