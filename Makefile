# attnlab -- build, test, run, bench.
#   make              libattnlab.a, libattnlab.so and the attnlab program
#   make test         every test (C unit tests, Lua tests, gradient checks, fixtures, fuzz, smoke)
#   make test SANITIZE=1   the same under ASan/UBSan (separate build folder)
#   make run          the in-context regression study, headless (README's first command)
#   make bench        side-by-side timings against the PyTorch reference -> bench/RESULTS.md
#   make CUDA=1       also build the CUDA backend (needs /usr/local/cuda)
CC       ?= cc
OPT      ?= -O3 -march=native
WARN     := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CFLAGS   := -std=gnu11 $(OPT) $(WARN) -fPIC -fopenmp -Icore/include -Icore $(EXTRA_CFLAGS)
LDLIBS   := -lopenblas -lstb -lm -lpthread
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
LUAJIT_LIBS   := $(shell pkg-config --libs luajit 2>/dev/null || echo -lluajit-5.1)
BUILD    := build

ifeq ($(SANITIZE),1)
  OPT    := -O1 -g -fno-omit-frame-pointer
  CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  BUILD  := build-san
endif

CORE_SRC := $(wildcard core/*.c core/ops/*.c core/attention/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
LIB_A    := $(BUILD)/libattnlab.a
LIB_SO   := $(BUILD)/libattnlab.so
PROGRAM  := $(BUILD)/attnlab
C_TESTS  := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

.PHONY: all test test-c test-lua run bench clean
all: $(LIB_A) $(LIB_SO) $(PROGRAM) attnlab

$(BUILD)/%.o: %.c core/include/attnlab.h core/internal.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -c -o $@ $<

$(LIB_A): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(LIB_SO): $(CORE_OBJ)
	$(CC) -shared -fopenmp -Wl,-z,nodelete $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(PROGRAM): lua/main.c $(LIB_A)
	$(CC) $(CFLAGS) $(LUAJIT_CFLAGS) -o $@ lua/main.c -Wl,--whole-archive $(LIB_A) -Wl,--no-whole-archive \
	    $(LDFLAGS) -Wl,-E $(LUAJIT_LIBS) $(LDLIBS) -ldl

# (-z nodelete: LuaJIT unloads libraries at exit, which would pull the code from under live OpenMP
# worker threads)
# the program at the top of the tree finds lua/ beside itself
attnlab: $(PROGRAM)
	ln -sf $(PROGRAM) attnlab

$(BUILD)/tests/%: tests/c/%.c tests/c/check.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< $(LIB_A) $(LDFLAGS) $(LDLIBS)

test: all $(C_TESTS)
	@BUILD=$(BUILD) sh tests/run_all.sh

run: all
	./attnlab run experiments/icl_regression.lua --out runs/icl_regression/latest

bench: all
	sh bench/run.sh

clean:
	rm -rf build build-san attnlab

-include $(CORE_OBJ:.o=.d)
