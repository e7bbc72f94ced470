# Included from bench/CMakeLists.txt.
add_executable(bench_mem mem_bench.cpp)
target_link_libraries(bench_mem PRIVATE vmspace_mem benchmark::benchmark vmspace_options)
