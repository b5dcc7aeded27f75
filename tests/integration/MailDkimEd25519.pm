# Ed25519-SHA256 (RFC 8463) for Debian's Mail::DKIM, loaded by dkim_verify.pl.
#
# Debian 12's libmail-dkim-perl (1.20230212) knows rsa-sha1 and rsa-sha256 only. This adds the
# third algorithm the way the module's own classes are built: Mail::DKIM still fetches the key
# record, parses the tags, canonicalises the header and body and selects the signed fields
# (nothing of dkimpy's); only the last step, Ed25519 over the SHA-256 header hash, is new here,
# done by CryptX's Crypt::PK::Ed25519 (libtomcrypt: neither OpenSSL nor libsodium, which sign).
package MailDkimEd25519;
use strict;
use warnings;

use Crypt::PK::Ed25519;
use MIME::Base64 qw(decode_base64);
use Mail::DKIM::Algorithm::rsa_sha256;
use Mail::DKIM::PublicKey;
use Mail::DKIM::Signature;

package MailDkimEd25519::Key;  # what Mail::DKIM asks of a key object ("cork"): its size, and verify
sub new { my ($class, $raw) = @_; return bless {pk => Crypt::PK::Ed25519->new->import_key_raw($raw, 'public')}, $class }
sub size { return 32 }  # bytes, as Crypt::OpenSSL::RSA answers
sub verify_message { my ($self, $signature, $message) = @_; return $self->{pk}->verify_message($signature, $message) }

package Mail::DKIM::Algorithm::ed25519_sha256;
use base 'Mail::DKIM::Algorithm::rsa_sha256';  # the same SHA-256 header and body digests

sub verify {
    my $self = shift;
    my $key = $self->signature->get_public_key;
    return unless ($key->get_tag('k') || 'rsa') eq 'ed25519';  # a=ed25519-sha256 wants k=ed25519
    my $digest = $self->{header_digest}->digest;
    my $signature = MIME::Base64::decode_base64($self->signature->data);
    my $cork = $key->cork;
    return unless $cork->isa('MailDkimEd25519::Key') && $cork->verify_message($signature, $digest);
    return $self->check_body_hash;
}

package Mail::DKIM::Signature;
no warnings 'redefine';
my $algorithm_class = \&Mail::DKIM::Signature::get_algorithm_class;
*Mail::DKIM::Signature::get_algorithm_class = sub {
    my ($self, $algorithm) = @_;
    return 'Mail::DKIM::Algorithm::ed25519_sha256' if $algorithm eq 'ed25519-sha256';
    return $algorithm_class->(@_);
};
my $hash_algorithm = \&Mail::DKIM::Signature::hash_algorithm;
*Mail::DKIM::Signature::hash_algorithm = sub {
    my ($self) = @_;
    return 'sha256' if ($self->algorithm // '') eq 'ed25519-sha256';
    return $hash_algorithm->(@_);
};

package Mail::DKIM::PublicKey;
no warnings 'redefine';
my $check = \&Mail::DKIM::PublicKey::check;
*Mail::DKIM::PublicKey::check = sub {
    my ($self) = @_;
    return $check->(@_) unless ($self->get_tag('k') || '') eq 'ed25519';
    my $p = $self->data;
    die "missing p= tag\n" unless defined $p;
    die "revoked\n" if $p eq '';
    die "invalid data\n" unless $p =~ /^[A-Za-z0-9+\/=]+$/ && length(MIME::Base64::decode_base64($p)) == 32;
    $self->cork;
    return 1;
};
my $convert = \&Mail::DKIM::PublicKey::convert;
*Mail::DKIM::PublicKey::convert = sub {
    my ($self) = @_;
    return $convert->(@_) unless ($self->get_tag('k') || '') eq 'ed25519';
    # RFC 8463 section 4: p= is the raw 32-byte public key, not a SubjectPublicKeyInfo
    $self->cork(MailDkimEd25519::Key->new(MIME::Base64::decode_base64($self->data)));
    return 1;
};

1;
