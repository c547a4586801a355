# La page de vérification hébergée, en français.

page-title = Confirmez votre éligibilité
heading = Confirmez votre éligibilité
intro = { $brand } propose une offre aux { $group }. Saisissez vos informations exactement comme elles figurent dans vos dossiers.
language-nav = Langue
choose-legend = À quel groupe appartenez-vous ?
choose-continue = Continuer
field-given_name = Prénom
field-family_name = Nom
field-email = Adresse e-mail
field-license_number = Numéro de licence
field-organization = Établissement, employeur ou organisation
field-birth_date = Date de naissance
field-birth_day = Jour
field-birth_month = Mois
field-birth_year = Année
hint-birth_date = Par exemple, 27 3 2007
hint-email = L’adresse fournie par votre établissement, votre employeur ou votre service
consent = J’accepte que { $brand } vérifie ces informations auprès de ses registres de vérification pour confirmer que j’appartiens à ce groupe. Elles ne servent qu’à cette vérification.
submit = Vérifier
required-note = Tous les champs sont obligatoires.
error-summary-title = Il y a un problème
error-given_name = Saisissez votre prénom
error-family_name = Saisissez votre nom
error-email = Saisissez une adresse e-mail, comme nom@exemple.fr
error-license_number = Saisissez votre numéro de licence
error-organization = Saisissez votre établissement, employeur ou organisation
error-birth_date = Saisissez une date de naissance réelle, comme 27 3 2007
error-consent = Cochez la case pour accepter la vérification
error-community = Choisissez le groupe auquel vous appartenez
error-other = Vérifiez ce champ
error-prefix = Erreur :
not-verified-title = Nous n’avons pas pu vous vérifier
not-verified-body = Vérifiez que vos informations correspondent à vos dossiers, puis réessayez.
attempts-left = { $left ->
    [one] Il vous reste { $left } tentative.
   *[other] Il vous reste { $left } tentatives.
}
exhausted-body = Vous pouvez revenir sur { $brand } et continuer sans l’offre.
verified-title = Vous êtes vérifié
verified-body = Votre éligibilité est confirmée. { $brand } peut maintenant appliquer l’offre.
continue = Continuer vers { $brand }
back = Revenir sur { $brand }
expired-title = Ce lien a expiré
expired-body = Revenez sur { $brand } pour recommencer.
canceled-title = Cette vérification a été annulée
canceled-body = Revenez sur { $brand } pour recommencer.
unknown-title = Ce lien n’est pas valide
unknown-body = Vérifiez le lien, ou revenez sur la boutique pour recommencer.
rate-limited-title = Trop de tentatives
rate-limited-body = { $minutes ->
    [one] Patientez { $minutes } minute, puis réessayez.
   *[other] Patientez { $minutes } minutes, puis réessayez.
}
csrf-title = Nous n’avons pas pu confirmer votre demande
csrf-body = Ouvrez de nouveau la page et renvoyez le formulaire. Les cookies doivent être autorisés pour cette page.
reload = Ouvrir de nouveau la page
community-student = étudiants
community-teacher = enseignants
community-nurse = infirmiers et infirmières
community-military = militaires
community-first_responder = services d’urgence
community-senior = seniors
subsegment-high_school = lycéens
subsegment-college = étudiants du supérieur
subsegment-active_duty = en service actif
subsegment-veteran = anciens combattants
subsegment-reservist = réservistes
subsegment-military_family = familles de militaires
subsegment-police = policiers
subsegment-emt = ambulanciers
subsegment-firefighter = pompiers
group-with-subsegment = { $community } ({ $subsegment })
