# cmake -DIN=file -DOUT=file.c -P embed_text.cmake: IN as the NUL-terminated C array
# mp_hfconfig_modeling_py (declared in io/mp_hfconfig.h).
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE ${OUT}.tmp "/* Generated from ${IN} by io/embed_text.cmake; do not edit. */\n"
     "#include \"mp_hfconfig.h\"\n\nconst char mp_hfconfig_modeling_py[] = {\n${bytes}0x00};\n")
file(RENAME ${OUT}.tmp ${OUT})
