package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// gorm models: one per table of schemaV1, never exported. Columns are named
// explicitly; TestModelsMatchSchema checks them against the migrated
// schema.

type endorserRow struct {
	ID         int64  `gorm:"column:id;primaryKey"`
	Identifier string `gorm:"column:identifier"`
}

func (endorserRow) TableName() string { return "endorsers" }

type principalRow struct {
	ID         int64  `gorm:"column:id;primaryKey"`
	EndorserID int64  `gorm:"column:endorser_id"`
	SubjectDN  string `gorm:"column:subject_dn"`
	IssuerDN   string `gorm:"column:issuer_dn"`
}

func (principalRow) TableName() string { return "principals" }

type subscriptionRow struct {
	ID            int64      `gorm:"column:id;primaryKey"`
	Identifier    string     `gorm:"column:identifier"`
	URL           string     `gorm:"column:url"`
	Description   string     `gorm:"column:description"`
	Authorised    bool       `gorm:"column:authorised"`
	UpdateMode    int        `gorm:"column:update_mode"`
	CredentialRef string     `gorm:"column:credential_ref"`
	FloorVersion  string     `gorm:"column:floor_version"`
	FloorCreated  *time.Time `gorm:"column:floor_created"`
	Updated       *time.Time `gorm:"column:updated"`
	LatestListID  *int64     `gorm:"column:latest_list_id"`
	ETag          string     `gorm:"column:etag"`
	LastModified  string     `gorm:"column:last_modified"`
	LastAttempt   *time.Time `gorm:"column:last_attempt"`
	LastResult    int        `gorm:"column:last_result"`
	LastError     string     `gorm:"column:last_error"`
}

func (subscriptionRow) TableName() string { return "subscriptions" }

type linkRow struct {
	ID             int64 `gorm:"column:id;primaryKey"`
	EndorserID     int64 `gorm:"column:endorser_id"`
	SubscriptionID int64 `gorm:"column:subscription_id"`
	Authorised     bool  `gorm:"column:authorised"`
}

func (linkRow) TableName() string { return "links" }

type listRow struct {
	ID             int64      `gorm:"column:id;primaryKey"`
	SubscriptionID int64      `gorm:"column:subscription_id"`
	Raw            []byte     `gorm:"column:raw"`
	SHA512         string     `gorm:"column:sha512"`
	Version        string     `gorm:"column:version"`
	Created        time.Time  `gorm:"column:created"`
	Expires        time.Time  `gorm:"column:expires"`
	Imported       time.Time  `gorm:"column:imported"`
	SignerDN       string     `gorm:"column:signer_dn"`
	IssuerDN       string     `gorm:"column:issuer_dn"`
	Expired        bool       `gorm:"column:expired"`
	Revoked        bool       `gorm:"column:revoked"`
	Invalidated    *time.Time `gorm:"column:invalidated"`
}

func (listRow) TableName() string { return "list_instances" }

// listColumnsNoRaw lists every list_instances column but raw, for
// summaries.
const listColumnsNoRaw = "id, subscription_id, sha512, version, created, expires, imported, signer_dn, issuer_dn, expired, revoked, invalidated"

type definitionRow struct {
	ID               int64  `gorm:"column:id;primaryKey"`
	SubscriptionID   int64  `gorm:"column:subscription_id"`
	Identifier       string `gorm:"column:identifier"`
	Selected         bool   `gorm:"column:selected"`
	Available        bool   `gorm:"column:available"`
	LatestInstanceID *int64 `gorm:"column:latest_instance_id"`
}

func (definitionRow) TableName() string { return "image_definitions" }

type instanceRow struct {
	ID           int64      `gorm:"column:id;primaryKey"`
	DefinitionID int64      `gorm:"column:definition_id"`
	ListID       int64      `gorm:"column:list_id"`
	Identifier   string     `gorm:"column:identifier"`
	Title        string     `gorm:"column:title"`
	Description  string     `gorm:"column:description"`
	URI          string     `gorm:"column:uri"`
	Size         int64      `gorm:"column:size"`
	Version      string     `gorm:"column:version"`
	SHA512       string     `gorm:"column:sha512"`
	Hypervisor   string     `gorm:"column:hypervisor"`
	Arch         string     `gorm:"column:arch"`
	OS           string     `gorm:"column:os"`
	OSVersion    string     `gorm:"column:os_version"`
	Comments     string     `gorm:"column:comments"`
	Format       string     `gorm:"column:format"`
	Created      *time.Time `gorm:"column:created"`
	Expires      *time.Time `gorm:"column:expires"`
	Files        *string    `gorm:"column:files"`
	Extra        *string    `gorm:"column:extra"`
	// Fingerprint is a digest of every field of the image as the list
	// describes it: an unchanged image keeps its instance.
	Fingerprint string `gorm:"column:fingerprint"`
}

func (instanceRow) TableName() string { return "image_instances" }

// allModels is every model, for the schema check.
var allModels = []any{&endorserRow{}, &principalRow{}, &subscriptionRow{}, &linkRow{}, &listRow{}, &definitionRow{}, &instanceRow{}, &catalogRow{}, &catalogItemRow{}}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func fromPtr(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func jsonPtr(m json.RawMessage) *string {
	if len(m) == 0 {
		return nil
	}
	s := string(m)
	return &s
}

func fromJSONPtr(s *string) json.RawMessage {
	if s == nil {
		return nil
	}
	return json.RawMessage(*s)
}

func (r *listRow) domain(sub string) ListInstance {
	return ListInstance{
		ID:               r.ID,
		SubscriptionUUID: sub,
		Raw:              r.Raw,
		SHA512:           r.SHA512,
		Version:          r.Version,
		Created:          utc(r.Created),
		Expires:          utc(r.Expires),
		Imported:         utc(r.Imported),
		SignerDN:         r.SignerDN,
		IssuerDN:         r.IssuerDN,
		Expired:          r.Expired,
		Revoked:          r.Revoked,
		InvalidatedAt:    fromPtr(r.Invalidated),
	}
}

func (r *instanceRow) domain() ImageInstance {
	return ImageInstance{
		ListID:      r.ListID,
		Identifier:  r.Identifier,
		Title:       r.Title,
		Description: r.Description,
		URI:         r.URI,
		Size:        r.Size,
		Version:     r.Version,
		SHA512:      r.SHA512,
		Hypervisor:  r.Hypervisor,
		Arch:        r.Arch,
		OS:          r.OS,
		OSVersion:   r.OSVersion,
		Comments:    r.Comments,
		Format:      r.Format,
		Created:     fromPtr(r.Created),
		Expires:     fromPtr(r.Expires),
		Files:       fromJSONPtr(r.Files),
		Extra:       fromJSONPtr(r.Extra),
	}
}

func newInstanceRow(defID, listID int64, im ImageInstance) instanceRow {
	return instanceRow{
		DefinitionID: defID,
		ListID:       listID,
		Identifier:   im.Identifier,
		Title:        im.Title,
		Description:  im.Description,
		URI:          im.URI,
		Size:         im.Size,
		Version:      im.Version,
		SHA512:       im.SHA512,
		Hypervisor:   im.Hypervisor,
		Arch:         im.Arch,
		OS:           im.OS,
		OSVersion:    im.OSVersion,
		Comments:     im.Comments,
		Format:       im.Format,
		Created:      timePtr(im.Created),
		Expires:      timePtr(im.Expires),
		Files:        jsonPtr(im.Files),
		Extra:        jsonPtr(im.Extra),
		Fingerprint:  fingerprint(im),
	}
}

// fingerprint digests every field of im but ListID. Equal fingerprints mean
// the list describes the image exactly as before.
func fingerprint(im ImageInstance) string {
	im.ListID = 0
	im.Created, im.Expires = utc(im.Created), utc(im.Expires)
	b, err := json.Marshal(im) // fixed field order; RawMessage is compacted
	if err != nil {
		// Only invalid Files/Extra JSON fails, and AcceptList refuses
		// that first; an empty fingerprint just never matches.
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
