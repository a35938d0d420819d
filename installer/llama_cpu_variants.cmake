# Included into llama-cpp-python's CMake project by installer/build_llama.py (CMAKE_PROJECT_INCLUDE).
#
# With GGML_CPU_ALL_VARIANTS llama.cpp builds one CPU backend per instruction-set level
# (ggml-cpu-haswell, ggml-cpu-skylakex, ...), but llama-cpp-python's CMakeLists installs only the
# targets it names, so the wheel would carry no CPU backend at all. At the end of configuration,
# when every target exists, install each variant next to libggml, where ggml's loader looks.
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL quantdesk_install_cpu_variants)

function(quantdesk_install_cpu_variants)
    get_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}/vendor/llama.cpp/ggml/src" PROPERTY BUILDSYSTEM_TARGETS)
    set(found "")
    foreach(target IN LISTS targets)
        if(target MATCHES "^ggml-cpu-")
            list(APPEND found ${target})
            set_target_properties(${target} PROPERTIES INSTALL_RPATH "$ORIGIN" BUILD_WITH_INSTALL_RPATH TRUE)
            install(TARGETS ${target}
                    LIBRARY DESTINATION ${SKBUILD_PLATLIB_DIR}/llama_cpp/lib
                    RUNTIME DESTINATION ${SKBUILD_PLATLIB_DIR}/llama_cpp/lib)
        endif()
    endforeach()
    message(STATUS "quantdesk: installing CPU backend variants: ${found}")
endfunction()
