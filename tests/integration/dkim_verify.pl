#!/usr/bin/perl
# An independent DKIM verifier for the tests: Mail::DKIM (Debian's libmail-dkim-perl), not the
# dkimpy we sign with. Reads one message on stdin, looks keys up in the test DNS server and
# prints one JSON object: {"result": "pass|fail|invalid|temperror|none", "detail": ...,
# "signatures": [{"result", "detail", "d", "s", "h", "a", "c", "i"}]}.
#
# usage: dkim_verify.pl DNS_PORT [DNS_ADDRESS]
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__);
use JSON::PP;
use MailDkimEd25519;  # ed25519-sha256 (RFC 8463), which Debian 12's Mail::DKIM lacks
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my ($port, $address) = @ARGV;
die "usage: $0 DNS_PORT [DNS_ADDRESS]\n" unless defined $port && $port =~ /^\d+$/;
$address //= '127.0.0.1';

# Only the test server, never /etc/resolv.conf: no search list, short timeouts.
my $resolver = Net::DNS::Resolver->new(
    nameservers => [$address], port => $port, recurse => 1,
    defnames => 0, dnsrch => 0, searchlist => [],
    udp_timeout => 3, tcp_timeout => 3, retrans => 1, retry => 2,
);
Mail::DKIM::DNS::resolver($resolver);

binmode STDIN;
my $dkim = Mail::DKIM::Verifier->new();
while (my $line = <STDIN>) {
    # Mail::DKIM wants CRLF line ends; a message saved with bare LF is converted line by line.
    $line =~ s/\015?\012\z/\015\012/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;

my @signatures = map {
    {
        result => scalar $_->result,
        detail => scalar $_->result_detail,
        d      => scalar $_->domain,
        s      => scalar $_->selector,
        h      => scalar $_->headerlist,
        a      => scalar $_->algorithm,
        c      => scalar $_->canonicalization,
        i      => scalar $_->identity,
    }
} $dkim->signatures;

print JSON::PP->new->canonical->encode({
    result     => scalar $dkim->result,
    detail     => scalar $dkim->result_detail,
    signatures => \@signatures,
}), "\n";
