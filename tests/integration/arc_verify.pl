#!/usr/bin/perl
# An independent ARC verifier for the forwarding tests (issue 20.4): Mail::DKIM::ARC::Verifier
# (Debian's libmail-dkim-perl), not the dkimpy we seal with. Reads one message on stdin, looks keys
# up in the test DNS server and prints one JSON object: {"result": "pass|fail|none|...",
# "detail": ..., "signatures": [{"result", "detail", "d", "s", "i"}]} (each ARC-Seal and
# ARC-Message-Signature of the chain).
#
# usage: arc_verify.pl DNS_PORT [DNS_ADDRESS]
use strict;
use warnings;

use JSON::PP;
use Mail::DKIM::DNS;
use Mail::DKIM::ARC::Verifier;
use Net::DNS::Resolver;

my ($port, $address) = @ARGV;
die "usage: $0 DNS_PORT [DNS_ADDRESS]\n" unless defined $port && $port =~ /^\d+$/;
$address //= '127.0.0.1';

my $resolver = Net::DNS::Resolver->new(
    nameservers => [$address], port => $port, recurse => 1,
    defnames => 0, dnsrch => 0, searchlist => [],
    udp_timeout => 3, tcp_timeout => 3, retrans => 1, retry => 2,
);
Mail::DKIM::DNS::resolver($resolver);

binmode STDIN;
my $arc = Mail::DKIM::ARC::Verifier->new();
while (my $line = <STDIN>) {
    $line =~ s/\015?\012\z/\015\012/;
    $arc->PRINT($line);
}
$arc->CLOSE;

my @signatures = map {
    {
        result => scalar $_->result,
        detail => scalar $_->result_detail,
        d      => scalar $_->domain,
        s      => scalar $_->selector,
        i      => scalar $_->instance,
    }
} $arc->signatures;

print JSON::PP->new->canonical->encode({
    result     => scalar $arc->result,
    detail     => scalar $arc->result_detail,
    signatures => \@signatures,
}), "\n";
