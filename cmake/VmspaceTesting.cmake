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
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  gtest_discover_tests(${T_NAME}
    TEST_PREFIX "${T_LABEL}."
    PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
  # Every stress-tier executable is a dependency of `stress_tests`: what
  # scripts/test.sh builds for the tsan preset (which runs only that tier).
  if(T_LABEL STREQUAL "stress")
    if(NOT TARGET stress_tests)
      add_custom_target(stress_tests)
    endif()
    add_dependencies(stress_tests ${T_NAME})
  endif()
endfunction()

# vmspace_add_host_variant(TARGET <target> LABEL <label> HOST <facts>)
#
# Register the GoogleTest executable <target> (made by vmspace_add_test)
# once more, as "<label>.other_host.<test>", run with VMSPACE_TEST_HOST set
# to <facts> (tests/support/test_host.h): the same tests on another kind of
# Linux host.
function(vmspace_add_host_variant)
  cmake_parse_arguments(T "" "TARGET;LABEL;HOST;TIMEOUT" "" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  gtest_discover_tests(${T_TARGET}
    TEST_PREFIX "${T_LABEL}.other_host."
    PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT} ENVIRONMENT "VMSPACE_TEST_HOST=${T_HOST}"
    DISCOVERY_TIMEOUT 60)
endfunction()
