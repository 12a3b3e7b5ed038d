/* An established TCP connection on ::1 with data in flight both ways, unread: the same
 * test as sock_tcp_established, built for IPv6 (addresses compared as sockaddr_in6,
 * flow info and scope id included). */
#define FAMILY AF_INET6
#include "sock_tcp_established.c"
