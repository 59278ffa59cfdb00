//! Changing the address book: users, contacts, companies, channel flags and relay
//! accounts. Every change that can alter who sees what reclassifies the stored mail of the
//! addresses it touches.

use std::collections::BTreeSet;

use super::messages::{self, carrying};
use super::txn::Txn;
use super::{CommitOptions, StoreError, schema};
use crate::model::{
    Address, Channel, ChannelFlags, Company, CompanyId, Contact, ContactId, Login, Party, Relay,
    User,
};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub login: Login,
    pub addresses: Vec<Address>,
    pub password_hash: Option<String>,
    pub show_only_active: bool,
}

/// A contact to create.
#[derive(Debug, Clone)]
pub struct NewContact {
    pub name: String,
    pub company: Option<String>,
    pub addresses: Vec<Address>,
    pub flags: ChannelFlags,
}

/// Flags to change on a channel; `None` leaves a flag as it is.
#[derive(Debug, Clone, Default)]
pub struct ChannelChange {
    pub shared: Option<bool>,
    pub exclude: Option<bool>,
    pub active: Option<bool>,
    /// With `exclude`, delete the stored mail that carries the address.
    pub purge: bool,
}

impl Txn<'_> {
    pub fn user(&self, login: &Login) -> Result<Option<User>, StoreError> {
        self.get("user", &schema::user(login))
    }

    pub fn channel(&self, address: &Address) -> Result<Option<Channel>, StoreError> {
        self.get("channel", &schema::channel(address))
    }

    fn contact(&self, id: ContactId) -> Result<Option<Contact>, StoreError> {
        self.get("contact", &schema::contact(id))
    }

    fn require_user(&self, login: &Login) -> Result<User, StoreError> {
        self.user(login)?
            .ok_or_else(|| StoreError::refused(format!("no user \"{login}\"")))
    }

    pub fn add_user(&mut self, o: &CommitOptions, new: NewUser) -> Result<User, StoreError> {
        if self.user(&new.login)?.is_some() {
            return Err(StoreError::refused(format!(
                "user \"{}\" already exists",
                new.login
            )));
        }
        let addresses = unique(new.addresses);
        if addresses.is_empty() {
            return Err(StoreError::refused("a user needs at least one address"));
        }
        for address in &addresses {
            if let Some(Channel {
                user: Some(owner), ..
            }) = self.channel(address)?
            {
                let msg = format!("address {address} already belongs to user \"{owner}\"");
                return Err(StoreError::refused(msg));
            }
        }

        let contact = ContactId(self.generate_id()?);
        for address in &addresses {
            let flags = match self.channel(address)? {
                Some(existing) => {
                    self.detach(existing.contact, address)?;
                    existing.flags
                }
                None => ChannelFlags::default_with(o.policy.default_shared),
            };
            let user = Some(new.login.clone());
            let ch = Channel {
                address: address.clone(),
                contact,
                user,
                flags,
            };
            self.put(schema::channel(address), &ch);
        }
        self.put(
            schema::contact(contact),
            &Contact {
                id: contact,
                name: new.login.to_string(),
                company: None,
                addresses: addresses.clone(),
                auto_created: false,
                user: Some(new.login.clone()),
            },
        );
        let user = User {
            login: new.login,
            password_hash: new.password_hash,
            contact,
            show_only_active: new.show_only_active,
        };
        self.put(schema::user(&user.login), &user);
        self.reclassify_addresses(o, &addresses)?;
        Ok(user)
    }

    /// Removes a user. Their contact stays, as an outside party.
    pub fn remove_user(&mut self, o: &CommitOptions, login: &Login) -> Result<User, StoreError> {
        let user = self.require_user(login)?;
        let mut addresses = Vec::new();
        if let Some(mut contact) = self.contact(user.contact)? {
            contact.user = None;
            for address in &contact.addresses {
                if let Some(mut ch) = self.channel(address)? {
                    ch.user = None;
                    self.put(schema::channel(address), &ch);
                }
            }
            addresses = contact.addresses.clone();
            self.put(schema::contact(contact.id), &contact);
        }
        self.remove(schema::user(login));
        self.reclassify_addresses(o, &addresses)?;
        Ok(user)
    }

    pub fn set_password(&mut self, login: &Login, hash: Option<String>) -> Result<(), StoreError> {
        let mut user = self.require_user(login)?;
        user.password_hash = hash;
        self.put(schema::user(login), &user);
        Ok(())
    }

    pub fn add_contact(
        &mut self,
        o: &CommitOptions,
        new: NewContact,
    ) -> Result<Contact, StoreError> {
        let name = new.name.trim().to_owned();
        if name.is_empty() {
            return Err(StoreError::refused("a contact needs a name"));
        }
        let addresses = unique(new.addresses);
        if addresses.is_empty() {
            return Err(StoreError::refused("a contact needs at least one address"));
        }
        for address in &addresses {
            self.check_adoptable(address)?;
        }

        let company = match new.company.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() => Some(self.company_for(c)?),
            _ => None,
        };
        let id = ContactId(self.generate_id()?);
        for address in &addresses {
            if let Some(existing) = self.channel(address)? {
                self.detach(existing.contact, address)?;
            }
            let ch = Channel {
                address: address.clone(),
                contact: id,
                user: None,
                flags: new.flags,
            };
            self.put(schema::channel(address), &ch);
        }
        let contact = Contact {
            id,
            name,
            company,
            addresses: addresses.clone(),
            auto_created: false,
            user: None,
        };
        self.put(schema::contact(id), &contact);
        self.reclassify_addresses(o, &addresses)?;
        Ok(contact)
    }

    /// An address may join a new contact if nobody configured it: unknown, or only seen in
    /// mail.
    fn check_adoptable(&self, address: &Address) -> Result<(), StoreError> {
        let Some(ch) = self.channel(address)? else {
            return Ok(());
        };
        if let Some(owner) = ch.user {
            let msg = format!("address {address} belongs to user \"{owner}\"");
            return Err(StoreError::refused(msg));
        }
        match self.contact(ch.contact)? {
            Some(c) if !c.auto_created => {
                let msg = format!(
                    "address {address} already belongs to contact \"{}\"",
                    c.name
                );
                Err(StoreError::refused(msg))
            }
            _ => Ok(()),
        }
    }

    /// Erases the contact that owns `address` and every stored message that carries any
    /// of its addresses. Returns the contact and how many messages went.
    pub fn forget_contact(&mut self, address: &Address) -> Result<(Contact, usize), StoreError> {
        let Some(ch) = self.channel(address)? else {
            return Err(StoreError::refused(format!(
                "no contact has the address {address}"
            )));
        };
        if let Some(owner) = ch.user {
            let msg =
                format!("address {address} belongs to user \"{owner}\"; remove the user first");
            return Err(StoreError::refused(msg));
        }
        let Some(contact) = self.contact(ch.contact)? else {
            let detail = format!("channel {address} names a missing contact");
            return Err(StoreError::Corrupt {
                what: "directory",
                detail,
            });
        };
        let mut erased = 0;
        for a in &contact.addresses {
            erased += messages::purge(self, a)?;
            self.remove(schema::channel(a));
        }
        self.remove(schema::contact(contact.id));
        Ok((contact, erased))
    }

    /// Changes a channel's flags, creating the channel (as a contact of its own) if the
    /// address is new. Returns the channel and how many stored messages were purged.
    pub fn set_channel(
        &mut self,
        o: &CommitOptions,
        address: &Address,
        change: ChannelChange,
    ) -> Result<(Channel, usize), StoreError> {
        let mut ch = match self.channel(address)? {
            Some(ch) => ch,
            None => self.new_contact_channel(o, address, address.to_string(), false)?,
        };
        if let Some(shared) = change.shared {
            ch.flags.shared = shared;
        }
        if let Some(exclude) = change.exclude {
            ch.flags.exclude = exclude;
        }
        if let Some(active) = change.active {
            ch.flags.active = active;
        }
        if change.purge && !ch.flags.exclude {
            return Err(StoreError::refused(
                "--purge deletes excluded mail: add --exclude",
            ));
        }
        self.put(schema::channel(address), &ch);

        let purged = if change.purge {
            messages::purge(self, address)?
        } else {
            0
        };
        self.reclassify_addresses(o, std::slice::from_ref(address))?;
        Ok((ch, purged))
    }

    fn new_contact_channel(
        &mut self,
        o: &CommitOptions,
        address: &Address,
        name: String,
        auto_created: bool,
    ) -> Result<Channel, StoreError> {
        let id = ContactId(self.generate_id()?);
        let contact = Contact {
            id,
            name,
            company: None,
            addresses: vec![address.clone()],
            auto_created,
            user: None,
        };
        self.put(schema::contact(id), &contact);
        let flags = ChannelFlags::default_with(o.policy.default_shared);
        let ch = Channel {
            address: address.clone(),
            contact: id,
            user: None,
            flags,
        };
        self.put(schema::channel(address), &ch);
        Ok(ch)
    }

    /// Removes an address from a contact; a contact left without addresses goes.
    fn detach(&mut self, id: ContactId, address: &Address) -> Result<(), StoreError> {
        let Some(mut contact) = self.contact(id)? else {
            return Ok(());
        };
        contact.addresses.retain(|a| a != address);
        if contact.addresses.is_empty() {
            self.remove(schema::contact(id));
        } else {
            self.put(schema::contact(id), &contact);
        }
        Ok(())
    }

    fn company_for(&mut self, name: &str) -> Result<CompanyId, StoreError> {
        let key = schema::company_name(name);
        if let Some(id) = self.get::<CompanyId>("company name", &key)? {
            return Ok(id);
        }
        let id = CompanyId(self.generate_id()?);
        self.put(
            schema::company(id),
            &Company {
                id,
                name: name.to_owned(),
            },
        );
        self.put(key, &id);
        Ok(id)
    }

    fn reclassify_addresses(
        &mut self,
        o: &CommitOptions,
        addresses: &[Address],
    ) -> Result<(), StoreError> {
        let mut ids = BTreeSet::new();
        for address in addresses {
            ids.extend(carrying(self, address)?);
        }
        for id in ids {
            messages::reclassify(self, o, id)?;
        }
        Ok(())
    }

    pub fn add_relay(&mut self, name: &str, password_hash: String) -> Result<Relay, StoreError> {
        let valid = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@+".contains(c));
        if !valid {
            let msg = format!(
                "relay name {name:?} must be 1 to 64 letters, digits, '.', '_', '-', '@' or '+'"
            );
            return Err(StoreError::refused(msg));
        }
        if self.contains(&schema::relay(name))? {
            return Err(StoreError::refused(format!(
                "relay \"{name}\" already exists"
            )));
        }
        let relay = Relay {
            name: name.to_owned(),
            password_hash,
        };
        self.put(schema::relay(name), &relay);
        Ok(relay)
    }

    pub fn remove_relay(&mut self, name: &str) -> Result<(), StoreError> {
        if !self.contains(&schema::relay(name))? {
            return Err(StoreError::refused(format!("no relay \"{name}\"")));
        }
        self.remove(schema::relay(name));
        Ok(())
    }
}

/// Creates contacts with default flags for party addresses nobody knows yet.
pub(super) fn auto_create(
    txn: &mut Txn<'_>,
    o: &CommitOptions,
    parties: &[Party],
) -> Result<(), StoreError> {
    for party in parties {
        if txn.channel(&party.address)?.is_some() {
            continue;
        }
        let name = party
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| party.address.to_string());
        txn.new_contact_channel(o, &party.address, name, true)?;
    }
    Ok(())
}

fn unique(addresses: Vec<Address>) -> Vec<Address> {
    let mut seen = BTreeSet::new();
    addresses
        .into_iter()
        .filter(|a| seen.insert(a.clone()))
        .collect()
}
