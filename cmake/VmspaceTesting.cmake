# vmspace_add_test(NAME <name> LABEL <unit|stress|differential>
#                  SOURCES <files...> [LIBS <targets...>] [TIMEOUT <s>])
#
# One GoogleTest executable per call; every test case in it becomes a CTest
# test carrying LABEL, so `ctest -L unit` / `-L stress` select a tier.
function(vmspace_add_test)
  cmake_parse_arguments(T "" "NAME;LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    if(T_LABEL STREQUAL "unit")
      set(T_TIMEOUT 120)
    else()
      set(T_TIMEOUT 600)
    endif()
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main vmspace_options)
  gtest_discover_tests(${T_NAME}
    TEST_PREFIX "${T_LABEL}."
    PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()
