# Install rules: libvmspace (static and shared), the public headers
# (include/vmspace/*.h and the generated version.h), the CMake package
# (find_package(vmspace CONFIG): vmspace::vmspace, vmspace::vmspace_static,
# vmspace::vmspace_shared) and vmspace.pc.  Included from CMakeLists.txt
# when VMSPACE_INSTALL is on.
include(CMakePackageConfigHelpers)

set(VMSPACE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/vmspace CACHE STRING
    "Where the CMake package files go (relative to the prefix)")

install(TARGETS vmspace_static vmspace_shared
  EXPORT vmspaceTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/vmspace
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/vmspace/version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vmspace)

install(EXPORT vmspaceTargets
  NAMESPACE vmspace::
  DESTINATION ${VMSPACE_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/vmspaceConfig.cmake.in
  ${PROJECT_BINARY_DIR}/vmspaceConfig.cmake
  INSTALL_DESTINATION ${VMSPACE_INSTALL_CMAKEDIR})
# 0.x: a minor version may break the API, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vmspaceConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vmspaceConfig.cmake ${PROJECT_BINARY_DIR}/vmspaceConfigVersion.cmake
  DESTINATION ${VMSPACE_INSTALL_CMAKEDIR})

# vmspace.pc, relocatable: its prefix is found from where the file is
# (pkg-config's ${pcfiledir}), so `cmake --install --prefix P` works.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  message(FATAL_ERROR "vmspace.pc needs CMAKE_INSTALL_LIBDIR and CMAKE_INSTALL_INCLUDEDIR relative to the prefix")
endif()
file(RELATIVE_PATH VMSPACE_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" VMSPACE_PC_TO_PREFIX "${VMSPACE_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/vmspace.pc.in ${PROJECT_BINARY_DIR}/vmspace.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/vmspace.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
