# io: element types, SHA-256, safetensors reading/writing; damaged models through the CLI.
mp_add_unit_test(test_dtype SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dtype.c
                 LABELS io TIMEOUT 60)
mp_add_unit_test(test_sha256 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_sha256.c
                 LABELS io TIMEOUT 60)
mp_add_unit_test(test_safetensors SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.c
                 LABELS io TIMEOUT 60)

# Damaged copies of the fixture model, one directory per case, under ${MP_BAD_DIR}/st_*.
add_test(NAME gen_bad_safetensors
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gen_bad_safetensors.py
                 ${MP_BAD_DIR} ${MP_FIXTURE_DIR})
set_tests_properties(gen_bad_safetensors PROPERTIES FIXTURES_SETUP bad_safetensors
                     TIMEOUT 60 LABELS "badinput;io")

set(MP_ST_EVAL_DATA ${MP_FIXTURE_DIR}/eval_dev.bin)
# mp_st_bad_case(CASE EXIT REGEX): eval on ${MP_BAD_DIR}/CASE must fail with EXIT and REGEX.
# --quiet: eval loads blocks lazily, so the missing-tensor and NaN cases fail after progress
# lines have been printed on stderr, and the fail test wants exactly one stderr line.
function(mp_st_bad_case case code regex)
  mp_add_fail_test(cli_bad_${case} EXIT ${code} REGEX "${regex}"
    FIXTURES bad_safetensors LABELS io
    COMMAND ${MP_CLI} eval --model ${MP_BAD_DIR}/${case} --data ${MP_ST_EVAL_DATA}
            --seqlen 256 --quiet)
endfunction()

mp_st_bad_case(st_truncated 3 "model\\.safetensors.*exceed the data section")
mp_st_bad_case(st_hdrlen 3 "model\\.safetensors.*header length [0-9]+ exceeds the file")
mp_st_bad_case(st_offsets_range 3 "model\\.safetensors.*data_offsets.*exceed the data section")
mp_st_bad_case(st_offsets_overlap 3 "model\\.safetensors.*overlap")
mp_st_bad_case(st_dtype 3 "model\\.safetensors.*unknown dtype 'Q4_K'")
mp_st_bad_case(st_shape 3
  "model\\.safetensors.*model\\.embed_tokens\\.weight.*does not match data_offsets")
mp_st_bad_case(st_missing_tensor 3
  "model\\.safetensors.*no tensor 'model\\.layers\\.2\\.mlp\\.up_proj\\.weight'")
mp_st_bad_case(st_nan 5
  "model\\.safetensors.*self_attn\\.q_proj\\.weight.*non-finite value \\(NaN\\)")

# The streaming writer: unit tests, and its files read back by the reference Python reader.
mp_add_unit_test(test_st_stream SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_st_stream.c
                 LABELS io TIMEOUT 60)
add_test(NAME st_stream_python
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_st_stream.py
                 $<TARGET_FILE:test_st_stream> ${CMAKE_CURRENT_BINARY_DIR}/work/st_stream)
set_tests_properties(st_stream_python PROPERTIES TIMEOUT 60 LABELS "io;python")
