# Included into llama-cpp-python's CMake project by installer/build_llama.py (CMAKE_PROJECT_INCLUDE).
#
# With GGML_CPU_ALL_VARIANTS llama.cpp builds one CPU backend per instruction-set level
# (ggml-cpu-haswell, ggml-cpu-skylakex, ...), but llama-cpp-python's CMakeLists installs only the
# targets it names, so the wheel would carry no CPU backend at all. At the end of configuration,
# when every target exists, install each variant next to libggml, where ggml's loader looks.
#
# Except sapphirerapids, the one variant with AMX: its AMX matrix kernels die with SIGILL at the
# first Q4_K/Q8_0 multiplication (tilezero on an unconfigured tile; measured with llama-cpp-python
# 0.3.36 on a Xeon with AMX enabled by the OS, ggml-org/llama.cpp PR 26954 describes the cause).
# Without it such a CPU loads the zen4 variant (AVX-512 with VNNI and BF16), which works.
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL quantdesk_install_cpu_variants)

function(quantdesk_install_cpu_variants)
    get_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}/vendor/llama.cpp/ggml/src" PROPERTY BUILDSYSTEM_TARGETS)
    set(found "")
    foreach(target IN LISTS targets)
        if(target MATCHES "^ggml-cpu-" AND NOT target STREQUAL "ggml-cpu-sapphirerapids")
            list(APPEND found ${target})
            set_target_properties(${target} PROPERTIES INSTALL_RPATH "$ORIGIN" BUILD_WITH_INSTALL_RPATH TRUE)
            install(TARGETS ${target}
                    LIBRARY DESTINATION ${SKBUILD_PLATLIB_DIR}/llama_cpp/lib
                    RUNTIME DESTINATION ${SKBUILD_PLATLIB_DIR}/llama_cpp/lib)
        endif()
    endforeach()
    message(STATUS "quantdesk: installing CPU backend variants: ${found}")
endfunction()
