# mk/ssh.mk - reconciler/guest (known_hosts, ssh, ssh_config).
# The integration test runs a real sshd and OpenSSH's client and ssh-keygen
# are the oracles of the known_hosts tests (also listed in DEB_TEST).
DEB_EXTRA += openssh-server openssh-client
