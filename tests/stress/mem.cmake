# Included from tests/stress/CMakeLists.txt: paths are relative to tests/stress/.
vmspace_add_test(NAME stress_mem LABEL stress
  SOURCES mem_stress.cpp LIBS vmspace_mem)
