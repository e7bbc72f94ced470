# Included from bench/CMakeLists.txt.
add_executable(bench_tree tree_bench.cpp)
target_link_libraries(bench_tree PRIVATE vmspace_tree benchmark::benchmark vmspace_options)
