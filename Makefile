# moonbert: build, test, bench.
#
#   make            runtime library, Lua module build/lib/moonbert/core.so, build/bin/moonbert
#                   (with the CUDA backend when nvcc is found; make CUDA=0 leaves it out)
#   make deps       install the Debian packages (apt-get as root, sudo otherwise; no-op when present)
#   make test       deps + build + C tests + busted specs (cuda_spec.lua also against the emulated
#                   device, build/emu/); ends with "N passed, N failed"
#   make sanitize   the same tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)
#   make valgrind   the C tests under valgrind --leak-check=full
#   make bench      benchmark figures as JSON
#   make bench-compare  moonbert's DistilBERT bench against the PyTorch peer (../shared/peer), ratio table
#   make fuzz       build the libFuzzer targets in fuzz/ (make fuzz-run runs each to FUZZ_RUNS=10000000
#                   executions or FUZZ_SECONDS=600, whichever comes first)
#   make install    moonbert and its Lua modules under PREFIX (default /usr/local); make uninstall
#
# Sources are found by wildcard: runtime/*.c is the runtime, bindings/*.c the
# Lua bindings (each declares MB_LUA_MODULE(name)), tests/c/test_*.c one C test
# program each, tests/spec/*_spec.lua the busted specs.

BUILD   ?= build
CC      ?= gcc
SAN     ?= 0
PKG_CONFIG ?= pkg-config

DEB_PACKAGES := lua5.4 liblua5.4-dev lua-filesystem lua-busted libopenblas-dev libopenblas-openmp-dev libsqlite3-dev \
                lua-dkjson pkg-config libutf8proc-dev libjansson-dev libreadline-dev sqlite3 valgrind chromium wordnet-base \
                postgresql libpq-dev slurm-wlm munge openmpi-bin libopenmpi-dev libdnnl-dev curl \
                libfuse3-dev fuse3 python3-optuna python3-torch

# OpenBLAS: Debian's OpenMP build (libopenblas-openmp-dev) where present, so that matrix products
# and the runtime's own OpenMP loops share libgomp's one thread pool. With the pthread build,
# OpenBLAS's threads and libgomp's both wait spinning for work on the same 2 cores (a full
# training step 1.76 -> 1.24 s). libopenblas.so.0 is a Debian alternative that points at the
# pthread build, hence the rpath. BLAS=pthread takes pkg-config's openblas instead.
MULTIARCH  := $(shell $(CC) -print-multiarch 2>/dev/null)
BLAS_OMP   := /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS       ?= $(if $(wildcard $(BLAS_OMP)/libopenblas.so),openmp,pthread)
ifeq ($(BLAS),openmp)
BLAS_CFLAGS := -I/usr/include/$(MULTIARCH)/openblas-openmp
BLAS_LIBS   := -L$(BLAS_OMP) -Wl,-rpath,$(BLAS_OMP) -lopenblas
else
BLAS_CFLAGS := $(shell $(PKG_CONFIG) --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell $(PKG_CONFIG) --libs openblas 2>/dev/null)
endif

PKGS    := sqlite3 libpq libutf8proc jansson
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags lua5.4 $(PKGS) 2>/dev/null) $(BLAS_CFLAGS)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) $(BLAS_LIBS)
LUA_LIBS   := $(shell $(PKG_CONFIG) --libs lua5.4 2>/dev/null)
RL_LIBS    := $(shell $(PKG_CONFIG) --libs readline 2>/dev/null || echo -lreadline)

OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -fPIC -fopenmp $(PKG_CFLAGS)
# oneDNN (libdnnl-dev, no pkg-config file in Debian): the bf16 matrix products (runtime/bf16.c).
DNNL_LIBS ?= -ldnnl
LDLIBS  := $(PKG_LIBS) $(DNNL_LIBS) -fopenmp -lm -lpthread
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# CUDA backend (docs/cuda.md): built wherever nvcc is found; CUDA=0 leaves it
# out and links runtime/cuda_stub.c instead (every device call then reports
# "built without CUDA"). runtime/cuda/gpu_*.c and *.cu need the toolkit;
# runtime/cuda/*.c else is host-side logic built either way.
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifneq ($(strip $(NVCC)),)
CUDA    ?= 1
else
CUDA    ?= 0
endif
CUDA_HOME ?= $(abspath $(dir $(NVCC))..)
NVCC_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O2 -std=c++17 -Xcompiler -fPIC $(NVCC_ARCH)
CUDA_HOST_SRC := $(filter-out runtime/cuda/gpu_%.c,$(sort $(wildcard runtime/cuda/*.c)))
ifeq ($(CUDA),1)
ifeq ($(strip $(NVCC)),)
$(error CUDA=1 but nvcc was not found: set NVCC=/path/to/nvcc, or build without the backend: make CUDA=0)
endif
CFLAGS  += -DMB_HAVE_CUDA=1 -I$(CUDA_HOME)/include
# cuBLAS is not linked: runtime/cuda/gpu_cublas.c opens it on first use (150 MB resident otherwise)
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lstdc++ -ldl
CUDA_SRC := $(CUDA_HOST_SRC) $(sort $(wildcard runtime/cuda/gpu_*.c))
CUDA_CU  := $(sort $(wildcard runtime/cuda/*.cu))
# The Lua module on an emulated device (tests/c/cuda_emul.c: host memory, kernels = their host
# references): the same objects, with the emulation in place of gpu_device, gpu_cublas, the
# kernels and libcudart. One extra object and one link; scripts/run-tests runs cuda_spec.lua on it.
# $(BUILD)/emu/bin/moonbert is the CLI beside it (it loads ../lib; MOONBERT_HOME names the tree).
EMU_MOD := $(BUILD)/emu/lib/moonbert/core.so $(BUILD)/emu/bin/moonbert
else
CUDA_SRC := $(CUDA_HOST_SRC) runtime/cuda_stub.c
CUDA_CU  :=
endif

# tests/tools/eiofs: a FUSE file system whose writes fail with EIO on demand, for
# tests/spec/io_error_spec.lua; built where libfuse3 is (libfuse3-dev), the spec is pending otherwise.
FUSE_LIBS := $(shell $(PKG_CONFIG) --libs fuse3 2>/dev/null)
EIOFS     := $(if $(FUSE_LIBS),$(BUILD)/tests/eiofs)

RUNTIME_SRC  := $(filter-out runtime/cuda_stub.c,$(sort $(wildcard runtime/*.c))) $(CUDA_SRC)
BINDINGS_SRC := $(sort $(wildcard bindings/*.c))
CTEST_SRC    := $(sort $(wildcard tests/c/test_*.c))
RUNTIME_OBJ  := $(RUNTIME_SRC:%.c=$(BUILD)/obj/%.o) $(CUDA_CU:%.cu=$(BUILD)/obj/%.o)
BINDINGS_OBJ := $(BINDINGS_SRC:%.c=$(BUILD)/obj/%.o)
CTEST_BIN    := $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)

LIB      := $(BUILD)/lib/libmoonbert.a
LUAMOD   := $(BUILD)/lib/moonbert/core.so
CLI      := $(BUILD)/bin/moonbert
MODLIST  := $(BUILD)/gen/modules.h

.PHONY: all deps deps-check test test-run sanitize valgrind bench bench-compare fuzz fuzz-run clean run pretrain install uninstall
all: $(CLI) $(LUAMOD) $(CTEST_BIN) $(EMU_MOD) $(EIOFS)

deps:
	@scripts/install-deps $(DEB_PACKAGES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Device code: no sanitizer flags (SAN=1 instruments the host C only).
$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(RUNTIME_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The list of binding modules, regenerated when the set of MB_LUA_MODULE lines changes.
$(MODLIST): $(BINDINGS_SRC)
	@mkdir -p $(dir $@)
	@grep -ho '^MB_LUA_MODULE([a-z_0-9]*)' $(BINDINGS_SRC) | sed 's/MB_LUA_MODULE(\(.*\))/MB_MODULE(\1)/' | sort > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(BUILD)/obj/bindings/core.o: $(MODLIST)
$(BUILD)/obj/bindings/core.o: CFLAGS += -I$(BUILD)/gen
# tests/c/test_dist.c checks runtime/dist.c's Open MPI ABI facts against mpi.h where it is installed
$(BUILD)/tests/test_dist: CFLAGS += $(shell $(PKG_CONFIG) --cflags ompi-c 2>/dev/null)
# sqrtf in the AdamW loop vectorises only without errno (see runtime/optim.c)
$(BUILD)/obj/runtime/optim.o: CFLAGS += -fno-math-errno

# -z nodelete: lua_close must not unload core.so (and with it libgomp) while OpenMP worker
# threads still spin in it; that crashed scripts at exit (SIGSEGV, about half the time).
$(LUAMOD): $(BINDINGS_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-z,nodelete $(LDFLAGS) -o $@ $(BINDINGS_OBJ) $(LIB) $(LDLIBS)

EMU_REPLACED := $(BUILD)/obj/runtime/cuda/gpu_device.o $(BUILD)/obj/runtime/cuda/gpu_cublas.o \
                $(CUDA_CU:%.cu=$(BUILD)/obj/%.o)
$(BUILD)/emu/bin/moonbert: $(CLI)
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/emu/lib/moonbert/core.so: $(BINDINGS_OBJ) $(RUNTIME_OBJ) $(BUILD)/obj/tests/c/cuda_emul.o
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-z,nodelete $(LDFLAGS) -o $@ $(BINDINGS_OBJ) $(filter-out $(EMU_REPLACED),$(RUNTIME_OBJ)) \
	    $(BUILD)/obj/tests/c/cuda_emul.o $(filter-out -lcudart,$(LDLIBS))

$(CLI): bindings/cli/main.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LUA_LIBS) $(RL_LIBS) -ldl -lm

$(BUILD)/tests/%: tests/c/%.c tests/c/harness.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tests/eiofs: tests/tools/eiofs.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell $(PKG_CONFIG) --cflags fuse3) $(LDFLAGS) -o $@ $< $(FUSE_LIBS)

test:
	@scripts/install-deps --check $(DEB_PACKAGES) || scripts/install-deps $(DEB_PACKAGES)
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/run-tests

test-run: all
	@BUILD=$(BUILD) scripts/run-tests

sanitize:
	@$(MAKE) --no-print-directory BUILD=build-san SAN=1 OPT=-O1 all
	@BUILD=build-san SAN=1 scripts/run-tests

valgrind: all
	@BUILD=$(BUILD) VALGRIND=1 scripts/run-tests --c-only

bench: all
	@$(CLI) bench all

bench-compare: all
	@scripts/bench-compare

run: all
	@$(CLI) run experiments/baseline_vs_finetune.lua $(ARGS)

pretrain: all
	@$(CLI) run experiments/pretrain_mlm.lua $(ARGS)

FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
fuzz: $(FUZZ_BIN)
FUZZ_RUNTIME_SRC := $(filter-out runtime/cuda_stub.c runtime/cuda/gpu_%.c,$(RUNTIME_SRC)) runtime/cuda_stub.c
build-fuzz/%: fuzz/%.c $(FUZZ_RUNTIME_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp $(PKG_CFLAGS) \
	    -o $@ $< $(FUZZ_RUNTIME_SRC) $(PKG_LIBS) $(DNNL_LIBS) $(LUA_LIBS) -lm -lpthread
build-fuzz/fuzz_tokenizer_json build-fuzz/fuzz_vocab: fuzz/fuzz_tokenizer_load.h
FUZZ_SECONDS ?= 600
FUZZ_RUNS ?= 10000000
fuzz-run: fuzz
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p build-fuzz/corpus/$$n; \
	  seeds=fuzz/corpus/$$n; [ -d $$seeds ] || seeds=; \
	  $$f -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus/$$n $$seeds 2>&1 | tail -15; done

# make install PREFIX=/usr/local (DESTDIR for packaging): PREFIX/bin/moonbert, the Lua modules in
# PREFIX/share/moonbert/lua/moonbert/, the C module PREFIX/lib/moonbert/core.so, which the
# installed moonbert finds from its own location. make uninstall removes them.
PREFIX  ?= /usr/local
INSTALL_LUA := $(DESTDIR)$(PREFIX)/share/moonbert/lua
install: $(CLI) $(LUAMOD)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/moonbert $(INSTALL_LUA)
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/moonbert
	install -m 755 $(LUAMOD) $(DESTDIR)$(PREFIX)/lib/moonbert/core.so
	cd bindings && find moonbert -name '*.lua' | while read f; do \
	    install -D -m 644 "$$f" "$(INSTALL_LUA)/$$f" || exit 1; done
	@echo "installed $(DESTDIR)$(PREFIX)/bin/moonbert (Lua modules in $(INSTALL_LUA))"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/moonbert $(DESTDIR)$(PREFIX)/lib/moonbert/core.so
	rm -rf $(INSTALL_LUA)/moonbert
	-rmdir $(DESTDIR)$(PREFIX)/lib/moonbert $(INSTALL_LUA) $(DESTDIR)$(PREFIX)/share/moonbert 2>/dev/null

clean:
	rm -rf build build-san build-fuzz

-include $(RUNTIME_OBJ:.o=.d) $(BINDINGS_OBJ:.o=.d) $(BUILD)/obj/tests/c/cuda_emul.d
