add_compile_options(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wno-unused-parameter)
if(RINGCAST_WERROR)
    add_compile_options(-Werror)
endif()
