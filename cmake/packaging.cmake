# Installation layout and the Debian package (CPack DEB).
#
#   cmake --install build [--prefix /usr]      binaries, man pages, systemd units, options file
#   tools/package                               build/ringcast_<version>_<arch>.deb
#
# ringcast, ringcast-cat and flood install themselves (install(TARGETS) next to their targets);
# this file adds the rest. Paths that depend on the prefix are computed at install time, because
# CPack installs again with its own prefix (/usr): the unit's ExecStart names
# <prefix>/bin/ringcast, and the options file goes to /etc/default/ringcast for the /usr prefix,
# else <prefix>/etc/default.

set(RINGCAST_MAN_PAGES ${PROJECT_SOURCE_DIR}/docs/man/ringcast.1
                       ${PROJECT_SOURCE_DIR}/docs/man/ringcast-cat.1)
if(TARGET flood)
    list(APPEND RINGCAST_MAN_PAGES ${PROJECT_SOURCE_DIR}/docs/man/flood.1)
endif()
install(FILES ${RINGCAST_MAN_PAGES} DESTINATION share/man/man1)

install(FILES ${PROJECT_SOURCE_DIR}/tools/systemd/ringcast.socket
              ${PROJECT_SOURCE_DIR}/tools/systemd/ringcast-metrics.socket
        DESTINATION lib/systemd/system)

set(RINGCAST_UNIT_SRC ${PROJECT_SOURCE_DIR}/tools/systemd/ringcast.service)
set(RINGCAST_UNIT_OUT ${PROJECT_BINARY_DIR}/install/ringcast.service)
set(RINGCAST_ENV_SRC ${PROJECT_SOURCE_DIR}/tools/systemd/ringcast.env)
set(RINGCAST_ENV_OUT ${PROJECT_BINARY_DIR}/install/ringcast)
install(CODE "
    file(READ \"${RINGCAST_UNIT_SRC}\" unit)
    string(REPLACE \"ExecStart=/usr/bin/ringcast \"
                   \"ExecStart=\${CMAKE_INSTALL_PREFIX}/bin/ringcast \" unit \"\${unit}\")
    if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
        set(sysconf /etc)
    else()
        set(sysconf \"\${CMAKE_INSTALL_PREFIX}/etc\")
        string(REPLACE \"EnvironmentFile=-/etc/default/ringcast\"
                       \"EnvironmentFile=-\${sysconf}/default/ringcast\" unit \"\${unit}\")
    endif()
    file(WRITE \"${RINGCAST_UNIT_OUT}\" \"\${unit}\")
    file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\"
         TYPE FILE FILES \"${RINGCAST_UNIT_OUT}\")
    configure_file(\"${RINGCAST_ENV_SRC}\" \"${RINGCAST_ENV_OUT}\" COPYONLY)
    file(INSTALL DESTINATION \"\${sysconf}/default\" TYPE FILE FILES \"${RINGCAST_ENV_OUT}\")
")

# ---- CPack: a .deb whose Depends come from what the binaries link (dpkg-shlibdeps) ----
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ringcast)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "ringcast")
set(CPACK_PACKAGE_CONTACT "ringcast maintainers <ringcast@localhost>")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "ringcast maintainers <ringcast@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "TCP broadcast relay on io_uring")
set(CPACK_PACKAGE_DESCRIPTION
    "ringcast relays every framed message a TCP client sends, unchanged, to every other\n\
connected client. One io_uring drives multishot accept and receive, each frame is\n\
stored once in a broadcast log, and each client gets one send carrying everything\n\
pending for it. Ships Prometheus metrics, systemd units with socket activation and\n\
the watchdog, the ringcast-cat command-line client and the flood load generator.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
# Install into a staging DESTDIR with the real prefix, so that /etc/default/ringcast lands in the
# package's /etc and the unit names /usr/bin/ringcast.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR})
# /etc/default/ringcast is a conffile: an upgrade keeps the operator's edits. The maintainer
# scripts only tell a running systemd to reload its units; nothing is enabled or started.
configure_file(${PROJECT_SOURCE_DIR}/cmake/deb/conffiles ${PROJECT_BINARY_DIR}/deb/conffiles
               COPYONLY)
foreach(script postinst prerm postrm)
    file(COPY ${PROJECT_SOURCE_DIR}/cmake/deb/${script} DESTINATION ${PROJECT_BINARY_DIR}/deb
         FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                          WORLD_READ WORLD_EXECUTE)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/deb/conffiles ${PROJECT_BINARY_DIR}/deb/postinst
    ${PROJECT_BINARY_DIR}/deb/prerm
    ${PROJECT_BINARY_DIR}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
