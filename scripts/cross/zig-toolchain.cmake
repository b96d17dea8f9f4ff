# CMake toolchain: build with zig for EDGE_YOLOX_ZIG_TARGET (e.g. aarch64-linux-gnu.2.17), so the extension
# links against that old glibc and zig's own static libc++ (no libstdc++ needed on the board).
# scripts/build-wheels.sh sets the environment this reads.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR "$ENV{EDGE_YOLOX_TARGET_ARCH}")
set(CMAKE_C_COMPILER "${CMAKE_CURRENT_LIST_DIR}/zig-cc")
set(CMAKE_CXX_COMPILER "${CMAKE_CURRENT_LIST_DIR}/zig-c++")
set(CMAKE_AR "${CMAKE_CURRENT_LIST_DIR}/zig-ar" CACHE FILEPATH "archiver")
set(CMAKE_RANLIB "${CMAKE_CURRENT_LIST_DIR}/zig-ranlib" CACHE FILEPATH "ranlib")
# Strip at link time: the host strip cannot read other targets and zig's objcopy cannot strip in place,
# so pybind11's post-build strip step is a no-op.
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-s")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-s")
set(CMAKE_STRIP /bin/true CACHE FILEPATH "strip")
