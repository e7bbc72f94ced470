# Included from tests/stress/CMakeLists.txt: paths are relative to tests/stress/.
vmspace_add_test(NAME stress_tree LABEL stress
  SOURCES tree_stress.cpp LIBS vmspace_tree)
