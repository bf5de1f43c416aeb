# io: Hugging Face config.json and token files; their refusals through the CLI.
mp_add_unit_test(test_hfconfig SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_hfconfig.c
                 LABELS io TIMEOUT 30)
target_link_libraries(test_hfconfig PRIVATE cjson) # it checks mp_json's exact doubles with cJSON
mp_add_unit_test(test_tokens SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokens.c
                 LABELS io TIMEOUT 30)

# Bad model directories and token files for the CLI cases below.
set(MP_CT_DIR ${MP_BAD_DIR}/ct)
add_test(NAME gen_bad_config_tokens
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gen_bad_config_tokens.py
                 ${MP_CT_DIR} ${MP_FIXTURE_DIR})
set_tests_properties(gen_bad_config_tokens PROPERTIES FIXTURES_SETUP bad_config_tokens
                     TIMEOUT 60 LABELS "badinput;io")

set(MP_EVAL_DEV ${MP_FIXTURE_DIR}/eval_dev.bin)
mp_add_fail_test(cli_bad_config_missing_field EXIT 3 REGEX "config\\.json.*hidden_size"
  FIXTURES bad_config_tokens LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_CT_DIR}/cfg_missing_field --data ${MP_EVAL_DEV}
          --seqlen 256)
mp_add_fail_test(cli_bad_config_model_type EXIT 3 REGEX "config\\.json.*model_type.*gpt2"
  FIXTURES bad_config_tokens LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_CT_DIR}/cfg_model_type --data ${MP_EVAL_DEV}
          --seqlen 256)
mp_add_fail_test(cli_bad_tokens_oov EXIT 3 REGEX "tok_oov\\.bin.*600"
  FIXTURES bad_config_tokens LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_CT_DIR}/tok_oov.bin
          --seqlen 256)
mp_add_fail_test(cli_bad_tokens_oov_np2 EXIT 3 REGEX "tok_oov\\.bin.*600" NP 2
  FIXTURES bad_config_tokens LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_CT_DIR}/tok_oov.bin
          --seqlen 256)
mp_add_fail_test(cli_bad_tokens_empty EXIT 3 REGEX "tok_empty\\.bin.*empty"
  FIXTURES bad_config_tokens LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_CT_DIR}/tok_empty.bin
          --seqlen 256)
mp_add_fail_test(cli_bad_seqlen_max_pos EXIT 3 REGEX "max_position_embeddings" LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_EVAL_DEV} --seqlen 1024)
mp_add_fail_test(cli_bad_model_path EXIT 3 REGEX "no_such_model_dir" LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_BAD_DIR}/ct_no_such_model_dir --data ${MP_EVAL_DEV}
          --seqlen 256)
mp_add_fail_test(cli_bad_data_path EXIT 3 REGEX "no_such_tokens\\.bin" LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_BAD_DIR}/ct_no_such_tokens.bin
          --seqlen 256)
