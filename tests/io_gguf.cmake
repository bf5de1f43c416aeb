# io: GGUF files written by the PyPI gguf package from the bundled model (every supported
# type, llama and deci), read, dequantised, written and converted; damaged GGUF files through
# the CLI. Needs `scripts/install-deps.sh --test` (gguf, safetensors, numpy).
mp_add_unit_test(test_gguf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf.c
                 LABELS "io;gguf" TIMEOUT 120)

set(MP_GGUF_DIR ${CMAKE_CURRENT_BINARY_DIR}/gguf)
set(MP_GGUF_EVAL_DATA ${MP_FIXTURE_DIR}/eval_dev.bin)

add_test(NAME gen_gguf
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gen_gguf.py
                 ${MP_GGUF_DIR} ${MP_FIXTURE_DIR})
set_tests_properties(gen_gguf PROPERTIES FIXTURES_SETUP gguf_files TIMEOUT 120 LABELS "io;gguf")

mp_add_cli_test(gguf_read_write TIMEOUT 900 LABELS "io;gguf" FIXTURES gguf_files
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_gguf.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_GGUF_DIR} ${MP_FIXTURE_DIR}
          ${MP_FIXTURE_DIR}/eval_dev.bin ${CMAKE_CURRENT_BINARY_DIR}/gguf_work)
mp_add_cli_test(convert_help LABELS gguf
  COMMAND bash -c "\"$0\" convert --help | grep -q 'dtype f32|f16|bf16.*default: f32'" ${MP_CLI})
mp_add_fail_test(usage_convert_args EXIT 2 REGEX "give IN and OUT" LABELS gguf
  COMMAND ${MP_CLI} convert ${MP_FIXTURE_DIR})

add_test(NAME gen_bad_gguf
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gen_bad_gguf.py
                 ${MP_BAD_DIR} ${MP_FIXTURE_DIR})
set_tests_properties(gen_bad_gguf PROPERTIES FIXTURES_SETUP bad_gguf TIMEOUT 60
                     LABELS "badinput;io;gguf")

# mp_gguf_bad_case(CASE EXIT REGEX): eval and convert of ${MP_BAD_DIR}/gguf_CASE.gguf must fail
# with EXIT and one line matching REGEX (which names the file); convert leaves no OUT and no
# OUT.tmp-* behind.
function(mp_gguf_bad_case case code regex)
  set(f ${MP_BAD_DIR}/gguf_${case}.gguf)
  mp_add_fail_test(cli_bad_gguf_${case} EXIT ${code} REGEX "gguf_${case}\\.gguf: .*${regex}"
    FIXTURES bad_gguf LABELS "io;gguf"
    COMMAND ${MP_CLI} eval --model ${f} --data ${MP_GGUF_EVAL_DATA} --seqlen 256 --quiet)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/bad_convert/${case}.gguf)
  mp_add_fail_test(cli_bad_gguf_convert_${case} EXIT ${code}
    REGEX "gguf_${case}\\.gguf: .*${regex}" FIXTURES bad_gguf LABELS "io;gguf"
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/expect_no_output.sh ${out} --
            ${MP_CLI} convert ${f} ${out})
endfunction()

mp_gguf_bad_case(truncated 3 "tensor '.*' bytes .* exceed the data section")
mp_gguf_bad_case(truncated_header 3 "truncated: tensor info [0-9]+ at byte [0-9]+ needs")
mp_gguf_bad_case(bad_magic 3 "not a GGUF file")
mp_gguf_bad_case(bad_version 3 "GGUF version 4 is not supported")
mp_gguf_bad_case(offset_range 3 "tensor 'output_norm\\.weight' bytes .* exceed the data section")
mp_gguf_bad_case(offset_overlap 3 "tensors '.*' and '.*' overlap")
mp_gguf_bad_case(offset_misaligned 3 "offset [0-9]+, not a multiple of the alignment 32")
mp_gguf_bad_case(size_lie 3 "tensor 'blk\\.2\\.ffn_up\\.weight' bytes .* exceed the data section")
mp_gguf_bad_case(type_unknown 3 "unknown ggml type 99")
mp_gguf_bad_case(type_q4k 3 "type Q4_K, which mpiprune does not read")
mp_gguf_bad_case(huge_tensor_count 3 "tensor count 1152921504606846976 is impossible")
mp_gguf_bad_case(huge_kv_count 3 "metadata count 1152921504606846976 is impossible")
mp_gguf_bad_case(huge_string 3 "length 4611686018427387904, more than the [0-9]+ bytes left")
mp_gguf_bad_case(huge_array 3 "array of 2305843009213693952 string elements")
mp_gguf_bad_case(dup_key 3 "metadata key 'llama\\.block_count' appears twice")
mp_gguf_bad_case(alignment 3 "general\\.alignment 3 is not a power of two")
mp_gguf_bad_case(ndims 3 "tensor 'output_norm\\.weight' has 5 dimensions")
mp_gguf_bad_case(arch 3 "architecture 'gpt2' is not supported")
mp_gguf_bad_case(missing_key 3 "metadata key 'llama\\.block_count' is missing")
mp_gguf_bad_case(shape 3 "tensor 'blk\\.1\\.attn_q\\.weight' .* has shape \\[128, 32\\] but \\[64, 64\\]")
mp_gguf_bad_case(nan 5 "tensor 'blk\\.0\\.attn_q\\.weight' has a non-finite value \\(NaN\\)")
mp_gguf_bad_case(fifo 3 "not a directory or a regular file")
mp_add_fail_test(cli_bad_gguf_nan_np2 EXIT 5 NP 2 FIXTURES bad_gguf LABELS "io;gguf"
  REGEX "gguf_nan\\.gguf: tensor 'blk\\.0\\.attn_q\\.weight' has a non-finite value"
  COMMAND ${MP_CLI} eval --model ${MP_BAD_DIR}/gguf_nan.gguf --data ${MP_GGUF_EVAL_DATA}
          --seqlen 256 --quiet)
# GGUF -> Hugging Face directory: the same evaluation bit for bit (llama Q4_1, deci with
# per-block widths, F32), on 1 and 2 ranks; bf16 output; an existing OUT refused.
mp_add_cli_test(gguf_convert_hf TIMEOUT 300 LABELS "io;gguf" FIXTURES gguf_files
  COMMAND env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
          bash ${CMAKE_CURRENT_SOURCE_DIR}/check_convert_hf.sh ${MP_CLI} ${MP_GGUF_DIR}
          ${MP_FIXTURE_DIR}/eval_dev.bin ${CMAKE_CURRENT_BINARY_DIR}/convert_hf_work)
set_tests_properties(gguf_convert_hf PROPERTIES PROCESSORS 2)
